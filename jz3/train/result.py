"""What a training run wrote (`run_training`'s result); importable without torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

TRAIN_DIR = "train"  # a training stage's run folder under its output folder
HF_DIR = "hf"  # the HF export under a training run's folder


def train_dir(stage_out: str | Path) -> Path:
    """Where `train_stage(job, stage_out, ...)` trains (checkpoints, metrics, export)."""
    return Path(stage_out) / TRAIN_DIR


def export_path(stage_out: str | Path) -> Path:
    """Where `train_stage(job, stage_out, ...)` exports its model (HF folder): fixed before the
    stage runs, so that a later stage's plan can name it."""
    return train_dir(stage_out) / HF_DIR


@dataclass
class TrainResult:
    output_dir: str
    hf_export_dir: Optional[str]
    final_loss: float
    steps: int
    log_file: str
    checkpoint_dir: Optional[str]
    tokens_seen: int
    preempted: bool
    wall_s: float
    seed: int = 0  # trainer.seed: model init and data order
