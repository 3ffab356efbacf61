"""Pipeline config: which stages run, per-stage config overrides, stage-specific sizes.

`overrides` maps a stage name to a nested mapping merged onto the root config for that stage
only (validated against the typed schema, so a misspelt key is an error naming it), e.g.

    pipeline:
      overrides:
        distill: {trainer: {mode: distill, lr: 1.0e-3, max_steps: 200}}
        pretrain: {trainer: {max_steps: 100}}

A stage's cache key hashes the config sections it reads *after* its overrides, so editing
`pipeline.overrides.pretrain` re-runs pretrain and what follows it, and nothing before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class LossEvalConfig:
    """Per-token loss of a model on benchmark reference solutions (the ablation's yardstick)."""

    benchmarks: List[str] = field(default_factory=lambda: ["gsm8k", "math-oai"])
    limit: Optional[int] = None  # items per benchmark; None = all
    max_len: int = 512
    batch_size: int = 8
    accuracy_limit: int = 0  # > 0: also greedy CoT accuracy on this many items per benchmark


@dataclass
class PipelineConfig:
    stages: List[str] = field(default_factory=list)  # empty = all stages in order
    force: List[str] = field(default_factory=list)  # stages to re-run even if cached
    overrides: Dict[str, Any] = field(default_factory=dict)  # stage name -> nested overrides
    influence_pool: int = 2000  # non-seed snippets the seed synthesizer writes for influence
    boost_init_from_seed: bool = True  # distill_boost continues the seed synthesizer
    synth_shards: int = 1  # local: shards run one after another; slurm: array size
    sft_sources: List[str] = field(default_factory=list)  # {"input","output"} files for SFT
    ablation: bool = True  # also pretrain on raw snippets with the same token budget
    loss_eval: LossEvalConfig = field(default_factory=LossEvalConfig)
    report: str = "${run_dir}/report.md"
