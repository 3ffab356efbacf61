"""The root config that Hydra composes and validates."""

from __future__ import annotations

from dataclasses import dataclass, field

from jz3.config.launcher import LauncherConfig
from jz3.config.pipeline import PipelineConfig
from jz3.config.stages import StagesConfig


@dataclass
class JZ3Config:
    exp_name: str = "default"
    run_dir: str = "runs/${exp_name}"
    seed: int = 0
    stages: StagesConfig = field(default_factory=StagesConfig)
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
