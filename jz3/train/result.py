"""What a training run wrote (`run_training`'s result); importable without torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


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
