"""Trainer: loop, schedules, checkpoints/resume, callbacks, tracking; entry `run_training(cfg)`."""
