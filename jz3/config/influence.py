"""Influence estimation (LESS-style) config: the `influence` section of the influence stage.

The LoRA warmup trains with the influence stage's own `trainer` and `data` sections (LESS,
`less/scripts/train/base_training_args.sh`: lr 2e-5, linear schedule, 3% warmup, weight decay
0, 4 epochs, AdamW (0.9, 0.999), 32 sequences per step, 2048 tokens); this section holds what
is LESS-specific: the LoRA shape, the warmup fraction, the feature length, the projection, the
target subtasks and the selection.
"""

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
    warmup_fraction: float = 0.05  # LESS `--percentage 0.05`: seeded random share of candidates
    # the seed of that draw (LESS `sample_data_seed`, default 42); the warmup's training seed
    # (LoRA init, dropout) is the stage's `trainer.seed` (LESS `--seed 0`), its data order
    # `trainer.data_seed` (LESS `--data_seed`)
    warmup_sample_seed: int = 42
    # The warmup's lr, epochs (one checkpoint each), batch and betas are the stage's `trainer`.
    proj_dim: int = 8192
    proj_kind: ProjKind = ProjKind.rademacher
    proj_seed: int = 0
    proj_structure: ProjStructure = ProjStructure.block
    factored: bool = True  # kronecker: LoGra-style factored projection of plain gradients
    energy_alloc: bool = True  # share D over layers by gradient energy of the warmup moments
    batch_size: int = 16
    # Tokens per example for the gradient features (LESS `get_info.py --max_length 2048`). A
    # longer example keeps its whole problem (the prompt) and the head of its solution.
    max_len: int = 2048
    # Target subtasks: one file each (GSM8K train, MATH train). A target's subtask is the
    # record's `subtask` field, else `target_names[i]`, else the dataset name of the file (its
    # folder when the file is a split like `train.jsonl`, else its stem). Score = max over
    # subtasks of the mean over the subtask's examples (LESS `matching.py`).
    targets: List[str] = field(default_factory=lambda: [
        "${shared:gsm8k/train.jsonl}", "${shared:math_train/train.jsonl}"])
    target_names: List[str] = field(default_factory=list)
    target_max: Optional[int] = None  # per target file
    top_k: Optional[int] = None
    top_p: Optional[float] = 0.1
    shard: Optional[int] = None  # None = SLURM_ARRAY_TASK_ID (or 0)
    num_shards: Optional[int] = None  # None = SLURM_ARRAY_TASK_COUNT (or 1)
    out_dir: str = "${run_dir}/influence"
