"""The root config that Hydra composes and validates."""

from __future__ import annotations

from dataclasses import dataclass, field

from jz3.config.data import DataConfig, SnippetConfig
from jz3.config.deepspeed import DeepSpeedConfig
from jz3.config.eval import EvalConfig
from jz3.config.influence import InfluenceConfig
from jz3.config.launcher import LauncherConfig
from jz3.config.model import ModelConfig
from jz3.config.pipeline import PipelineConfig
from jz3.config.synth import SynthConfig
from jz3.config.teacher import TeacherConfig
from jz3.config.trainer import TrainerConfig


@dataclass
class JZ3Config:
    exp_name: str = "default"
    run_dir: str = "runs/${exp_name}"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    snippets: SnippetConfig = field(default_factory=SnippetConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    influence: InfluenceConfig = field(default_factory=InfluenceConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
