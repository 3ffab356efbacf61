"""Learning-rate schedules as multipliers of the peak lr (for `torch.optim.lr_scheduler.LambdaLR`).

`multiplier(i)` is the factor used by optimizer step `i` (0-based). Warmup is linear from 1/w to 1.
- wsd: warmup, then constant for `stable_ratio` of the run, then linear decay to `min_lr_ratio`
  at the last step, or with `decay_clip` linear decay toward 0 at the last step held at
  `min_lr_ratio` once reached: the release's `max(0.1, (N - t) / (N - s))` from step s on
  (JiuZhang3.0 `src/utils/train_utils.py` `get_wsd_scheduler`: 3% warmup, decay from 85%,
  0.1x from 98.5% of the run);
- cosine / linear: warmup, then decay to `min_lr_ratio` at the last step (linear also takes
  `decay_clip`);
- constant: warmup, then 1.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable

import torch

from jz3.config.enums import Schedule
from jz3.config.trainer import TrainerConfig


def multiplier(step: int, total: int, schedule: Schedule, warmup_ratio: float, stable_ratio: float,
               min_lr_ratio: float, decay_clip: bool = False) -> float:
    warmup = int(math.ceil(warmup_ratio * total))
    if step < warmup:
        return (step + 1) / warmup
    if schedule == Schedule.constant:
        return 1.0
    decay_start = warmup
    if schedule == Schedule.wsd:
        decay_start = min(total - 1, warmup + int(round(stable_ratio * total)))
        if step < decay_start:
            return 1.0
    span = max(1, total - decay_start)
    if decay_clip and schedule in (Schedule.linear, Schedule.wsd):
        return max(min_lr_ratio, (total - step) / span)
    progress = min(1.0, (step - decay_start + 1) / span)
    if schedule == Schedule.cosine:
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule in (Schedule.linear, Schedule.wsd):
        return 1.0 - (1.0 - min_lr_ratio) * progress
    raise ValueError(f"trainer.schedule: unknown schedule {schedule!r}")


def lr_lambda(cfg: TrainerConfig, total_steps: int) -> Callable[[int], float]:
    return partial(multiplier, total=total_steps, schedule=cfg.schedule, warmup_ratio=cfg.warmup_ratio,
                   stable_ratio=cfg.stable_ratio, min_lr_ratio=cfg.min_lr_ratio,
                   decay_clip=cfg.decay_clip)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainerConfig,
                    total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total_steps))
