"""One typed section per pipeline stage (`cfg.stages.<stage>`); a stage receives exactly its own.

Training-like stages (distill, distill_boost, pretrain, pretrain_raw, sft, and the influence
warmup) carry their own `model`, `trainer`, `deepspeed` and `data` sections, chosen per stage by
Hydra package overrides in an experiment, e.g.

    defaults:
      - override /model@stages.distill.model: deepseekmath_7b
      - override /trainer@stages.distill.trainer: distill

A field left empty that names a stage's *input* (e.g. `stages.pretrain.data.sources`,
`stages.synthesize.synth.model_path`) is filled from the finished upstream stage's typed result;
when set, the stage runs on what it names (single-stage launches, bringing your own data).
No stage ever writes into this config: inputs are passed to the stage functions as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from omegaconf import II

from jz3.config.data import DataConfig, DataSource, SnippetConfig
from jz3.config.deepspeed import DeepSpeedConfig
from jz3.config.enums import Precision
from jz3.config.eval import EvalConfig, SandboxConfig
from jz3.config.influence import InfluenceConfig
from jz3.config.model import ModelConfig
from jz3.config.synth import FilterConfig, SynthConfig
from jz3.config.teacher import TeacherConfig
from jz3.config.trainer import TrainerConfig


@dataclass
class TrainJob:
    """Everything `jz3.train.entry.run_training` reads: one training run."""

    seed: int = II("seed")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)


@dataclass
class SnippetsStage:
    snippets: SnippetConfig = field(default_factory=SnippetConfig)
    # Prompt-type mixture: prompt type name -> weight (empty: equal weights on all nine).
    mixture: Dict[str, float] = field(default_factory=dict)


@dataclass
class KDStage:
    """Teacher calls for `count` snippets: kd_seed draws them at random (seeded, across every
    source); kd_boost takes the first `count` of influence's ranking. With `from_file` the
    stage calls no teacher: it imports an existing KD set in the release's format (or jz3's),
    every parseable row (`count` unused), see `jz3.synth.parse.read_release_kd`."""

    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    count: int = 8000
    seed: int = II("seed")
    from_file: Optional[str] = None  # a release-format KD file (JSONL or JSON array)
    keep_prompts: bool = False  # from_file: keep its prompts (default: re-render jz3's)


@dataclass
class DistillStage(TrainJob):
    pass


@dataclass
class DistillBoostStage(TrainJob):
    init_from_seed: bool = False  # True: continue the seed synthesizer; False (paper): retrain


@dataclass
class InfluenceStage(TrainJob):
    """The seed synthesizer writes for `pool` random non-seed snippets; a LESS LoRA warmup on
    the synthesizer model ranks what it wrote. `model`/`trainer`/`deepspeed`/`data` are the
    warmup's. `synth.model_path` empty = the distill stage's export (the seed synthesizer);
    `model.path` empty = the synthesizer; both are resolved in the plan."""

    influence: InfluenceConfig = field(default_factory=InfluenceConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)  # sampling for the pool
    pool: int = 13000


@dataclass
class SynthesizeStage:
    synth: SynthConfig = field(default_factory=SynthConfig)
    shards: int = 1  # local: shards run one after another; SLURM: the array size


@dataclass
class FilterStage:
    filter: FilterConfig = field(default_factory=FilterConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)  # tool-solution verification


@dataclass
class PretrainRawStage(TrainJob):
    """The ablation's raw-snippet arm: this section's model/trainer/data on the snippets' raw
    text. `match_pretrain_steps`: train exactly the pretrain stage's step count (same token
    budget by construction, also when pretrain's steps follow the synthetic volume through
    `trainer.epochs`). `extra_seeds`: repeat both arms at these `trainer.seed`s (model init and
    data order), the synthetic arm on `synthetic_sources` (pretrain's own `data.sources`; when
    empty, the filter stage's output) with this section's settings (which must equal
    pretrain's but for the seed); the ablation then reports each arm's mean and seed spread.
    The matched `trainer.max_steps` is resolved in the plan (pretrain's `max_steps`, or
    `<pretrain.result.steps>` when those follow `trainer.epochs`)."""

    enabled: bool = False  # the raw-snippet ablation baseline (doubles the costliest stage)
    match_pretrain_steps: bool = False
    extra_seeds: List[int] = field(default_factory=list)
    synthetic_sources: List[DataSource] = II("stages.pretrain.data.sources")


@dataclass
class SFTStage(TrainJob):
    """Instruction tuning after pretraining, as a separate run. The JiuZhang3.0 recipe has no such
    stage (its SFT data ends the pretraining run: `stages.pretrain.data.tail_sources`), so the
    paper-scale experiments disable it."""

    enabled: bool = True


@dataclass
class EvaluateStage:
    eval: EvalConfig = field(default_factory=EvalConfig)
    # which export `eval.model_path: null` evaluates: the sft stage's (True) or the pretrain
    # stage's (False); follows `stages.sft.enabled`
    after_sft: bool = II("stages.sft.enabled")


@dataclass
class LossEvalConfig:
    """Per-token loss of a model on benchmark reference solutions (the ablation's yardstick)."""

    benchmarks: List[str] = field(default_factory=lambda: ["gsm8k", "math-oai"])
    limit: Optional[int] = None  # items per benchmark; None = all
    max_len: int = 512
    batch_size: int = 8
    precision: Precision = Precision.fp32  # weights of the scored model in the forward pass
    accuracy_limit: int = 0  # > 0: also greedy CoT accuracy on this many items per benchmark


@dataclass
class AblationStage:
    enabled: bool = False  # runs when pretrain_raw does
    loss_eval: LossEvalConfig = field(default_factory=LossEvalConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)  # data_dir, accuracy generation
    # an HF folder scored beside the arms as the `base` row (the model both arms start from,
    # e.g. `${stages.pretrain.model.path}`); None: no base row
    base_model: Optional[str] = None


@dataclass
class StagesConfig:
    snippets: SnippetsStage = field(default_factory=SnippetsStage)
    kd_seed: KDStage = field(default_factory=KDStage)
    distill: DistillStage = field(default_factory=DistillStage)
    influence: InfluenceStage = field(default_factory=InfluenceStage)
    kd_boost: KDStage = field(default_factory=lambda: KDStage(count=1300))
    distill_boost: DistillBoostStage = field(default_factory=DistillBoostStage)
    synthesize: SynthesizeStage = field(default_factory=SynthesizeStage)
    filter: FilterStage = field(default_factory=FilterStage)
    pretrain: TrainJob = field(default_factory=TrainJob)  # also the pack stage's `data`
    pretrain_raw: PretrainRawStage = field(default_factory=PretrainRawStage)
    sft: SFTStage = field(default_factory=SFTStage)
    evaluate: EvaluateStage = field(default_factory=EvaluateStage)
    ablation: AblationStage = field(default_factory=AblationStage)
