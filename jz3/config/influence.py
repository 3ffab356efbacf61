"""Influence estimation (LESS-style) config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from jz3.config.enums import InfluenceStep, ProjKind, ProjStructure


@dataclass
class LoraConfig:
    r: int = 128
    alpha: int = 512
    dropout: float = 0.1
    target_modules: List[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )


@dataclass
class InfluenceConfig:
    lora: LoraConfig = field(default_factory=LoraConfig)
    step: InfluenceStep = InfluenceStep.all
    candidates: Optional[str] = None  # candidate records (kd/synth/snippet/train) for launch/
    candidate_max: Optional[int] = None  # use only the first N candidates (tiny runs)
    warmup_fraction: float = 0.05
    warmup_epochs: int = 4  # one checkpoint (LoRA + Adam moments) per epoch
    warmup_lr: float = 2e-5
    proj_dim: int = 8192
    proj_kind: ProjKind = ProjKind.rademacher
    proj_seed: int = 0
    proj_structure: ProjStructure = ProjStructure.block
    factored: bool = True  # kronecker: LoGra-style factored projection of plain gradients
    energy_alloc: bool = True  # share D over layers by gradient energy of the warmup moments
    batch_size: int = 16
    max_len: int = 512
    targets: List[str] = field(default_factory=list)  # target-set files (e.g. GSM8K train)
    target_max: Optional[int] = None
    top_k: Optional[int] = None
    top_p: Optional[float] = 0.1
    shard: Optional[int] = None  # None = SLURM_ARRAY_TASK_ID (or 0)
    num_shards: Optional[int] = None  # None = SLURM_ARRAY_TASK_COUNT (or 1)
    out_dir: str = "${run_dir}/influence"
