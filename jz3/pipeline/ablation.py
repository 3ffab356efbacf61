"""The ablation's verdict: synthetic-data vs raw-snippet pretraining, with seed spread.

Each arm is trained at one or more seeds (`stages.pretrain_raw.extra_seeds`) and scored by the
reference-solution loss (nats/token, lower is better) per benchmark. For one benchmark:
  gap    = mean(raw) - mean(synthetic)       (> 0: synthetic data gives the lower loss)
  spread = max over the arms of (max - min over that arm's seeds)
and the verdict is `synthetic_better` / `raw_better` when |gap| > spread, `within_spread`
otherwise, and `one_seed` when an arm has a single seed (no spread measured: no verdict).
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Dict, List, Sequence

SYNTHETIC, RAW = "synthetic", "raw"


class Verdict(str, Enum):
    synthetic_better = "synthetic_better"  # lower loss with synthetic data, beyond the spread
    raw_better = "raw_better"
    within_spread = "within_spread"
    one_seed = "one_seed"  # an arm has one seed: no spread, no verdict


@dataclasses.dataclass
class ArmComparison:
    synthetic: List[float]
    raw: List[float]
    synthetic_mean: float
    raw_mean: float
    synthetic_spread: float
    raw_spread: float
    gap: float  # mean(raw) - mean(synthetic)
    spread: float  # the larger of the two arms' spreads
    verdict: Verdict

    def as_dict(self) -> Dict[str, object]:
        d = dataclasses.asdict(self)
        d["verdict"] = self.verdict.value
        return d


def _spread(xs: Sequence[float]) -> float:
    return max(xs) - min(xs) if xs else 0.0


def compare_arms(synthetic: Sequence[float], raw: Sequence[float]) -> ArmComparison:
    """Compare the two arms' per-seed losses (lower is better); see the module docstring."""
    if not synthetic or not raw:
        raise ValueError(f"compare_arms needs at least one loss per arm, got {len(synthetic)} "
                         f"synthetic and {len(raw)} raw")
    s_mean, r_mean = sum(synthetic) / len(synthetic), sum(raw) / len(raw)
    s_spread, r_spread = _spread(synthetic), _spread(raw)
    gap, spread = r_mean - s_mean, max(s_spread, r_spread)
    if min(len(synthetic), len(raw)) < 2:
        verdict = Verdict.one_seed
    elif abs(gap) <= spread:
        verdict = Verdict.within_spread
    else:
        verdict = Verdict.synthetic_better if gap > 0 else Verdict.raw_better
    return ArmComparison(list(synthetic), list(raw), s_mean, r_mean, s_spread, r_spread, gap,
                         spread, verdict)


def compare_rows(rows: Dict[str, Dict[str, object]]) -> Dict[str, Dict[str, object]]:
    """Per benchmark, the comparison of the ablation rows (`{"arm", "seed", "loss": {bench:
    {"loss_per_token"}}}`), arms `synthetic` and `raw`; benchmarks scored in both arms only."""
    per: Dict[str, Dict[str, List[float]]] = {}
    for row in rows.values():
        arm = str(row.get("arm"))
        for bench, v in (row.get("loss") or {}).items():  # type: ignore[union-attr]
            per.setdefault(bench, {}).setdefault(arm, []).append(float(v["loss_per_token"]))
    return {b: compare_arms(a[SYNTHETIC], a[RAW]).as_dict() for b, a in per.items()
            if a.get(SYNTHETIC) and a.get(RAW)}
