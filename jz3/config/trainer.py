"""Trainer config: optimisation, schedule, checkpoints, tracking."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from jz3.config.enums import Precision, Schedule, TrainMode, WandbMode


@dataclass
class WandbConfig:
    mode: WandbMode = WandbMode.disabled
    project: str = "jz3"
    entity: Optional[str] = None
    name: Optional[str] = None
    dir: str = "${run_dir}"
    tags: List[str] = field(default_factory=list)


@dataclass
class TrainerConfig:
    mode: TrainMode = TrainMode.pretrain
    output_dir: str = "${run_dir}/train"
    init_from: Optional[str] = None  # HF folder to start from (e.g. a pretrain export for SFT)
    lr: float = 1e-5
    weight_decay: float = 0.1
    betas: List[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    schedule: Schedule = Schedule.wsd
    warmup_ratio: float = 0.03
    stable_ratio: float = 0.85  # WSD only
    min_lr_ratio: float = 0.1
    # wsd / linear: False = reach min_lr_ratio exactly at the last step; True = decay linearly
    # toward 0 at the last step and hold at min_lr_ratio once reached (the release's WSD:
    # max(0.1, (N - t) / (0.15 N)), at 0.1x from 98.5% of the run)
    decay_clip: bool = False
    max_steps: int = -1  # -1 = derive from epochs
    epochs: float = 1.0
    global_batch_size: int = 32
    micro_batch_size: int = 1
    grad_clip: float = 1.0
    precision: Precision = Precision.bf16
    # fp32 matmuls and convolutions in TF32 on Ampere+ GPUs (the release's `--tf32 True`)
    tf32: bool = True
    seed: int = 42  # model init, dropout and (unless data_seed) the data order
    data_seed: Optional[int] = None  # the data order's seed (HF `--data_seed`); None: `seed`
    log_every: int = 10
    peak_tflops: Optional[float] = None  # per device, for MFU; None = look up the GPU (0 on CPU)
    save_every: int = 1000  # a checkpoint every N optimizer steps (0: none by step count)
    # also a checkpoint at the end of every epoch (the release's synthesizer: --save_strategy epoch)
    save_every_epoch: bool = False
    keep_last: int = 2  # newest complete checkpoints kept (0: all, the HF Trainer's default)
    resume: bool = True
    export_hf: bool = True
    wandb: WandbConfig = field(default_factory=WandbConfig)
