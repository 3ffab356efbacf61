"""Experiments that compare whole training runs (e.g. the SmolLM2 real-data ablation, `smol`)."""
