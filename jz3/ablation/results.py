"""Typed results of the ablation's stages (`pretrain_raw`, `ablation`); importable without torch."""

from __future__ import annotations

import dataclasses
from typing import Dict, List

from jz3.ablation.verdict import Arm, ArmComparison, ModelScore
from jz3.train.result import TrainResult


@dataclasses.dataclass
class SeedRun:
    """One extra-seed model of the ablation (`stages.pretrain_raw.extra_seeds`)."""

    arm: Arm
    seed: int
    hf_export_dir: str
    steps: int
    tokens: int
    final_loss: float


@dataclasses.dataclass
class PretrainRawResult(TrainResult):
    """The raw arm at the section's seed, and both arms at each extra seed."""

    seed_runs: List[SeedRun] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class AblationResult:
    """The scored models and the verdict per benchmark (`jz3.ablation.verdict.compare_rows`).

    ablation.json holds `{"models": {name: ModelScore}, "comparison": {benchmark:
    ArmComparison.as_dict()}}`: the comparison there also carries its `verdict` (the paired
    verdict when scored per item, else the spread rule's)."""

    ablation: str  # the path of ablation.json
    rows: Dict[str, ModelScore] = dataclasses.field(default_factory=dict)  # model name ->
    comparison: Dict[str, ArmComparison] = dataclasses.field(default_factory=dict)  # benchmark ->
