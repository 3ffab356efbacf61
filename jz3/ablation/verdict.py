"""The ablation's verdict: synthetic-data vs raw-snippet pretraining.

Each arm is trained at one or more seeds (`stages.pretrain_raw.extra_seeds`) and scored by the
reference-solution loss (nats/token, lower is better) per benchmark. For one benchmark:
  gap    = mean(raw) - mean(synthetic)       (> 0: synthetic data gives the lower loss)
  spread = max over the arms of (max - min over that arm's seeds)
The verdict is a paired comparison over benchmark items and seeds: the same items are scored
by both arms, and the arms' models are paired by seed. A paired bootstrap resamples items and
seed pairs together (2000 draws) and gives a 95% interval for the token-weighted loss gap;
`synthetic_better` / `raw_better` when the interval excludes 0, `inconclusive` otherwise. It
is reported next to the seed spread and the spread rule (`spread_verdict`: |gap| > spread;
`one_seed` when an arm has a single seed). With one seed pair the interval covers item noise
only, and the report says how many seed pairs it used.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Dict, List, Optional, Sequence, Tuple

from jz3.eval.report import Metrics

BOOTSTRAP_DRAWS = 2000
LEVEL = 0.95


class Arm(str, Enum):
    """What a model of the ablation was trained on."""

    synthetic = "synthetic"  # the synthetic data (`stages.pretrain`'s sources)
    raw = "raw"  # the raw snippet text (`stages.pretrain_raw`)
    base = "base"  # not trained: the model both arms start from (a reference row)


@dataclasses.dataclass
class BenchLoss:
    """One model's reference-solution loss on one benchmark (`jz3.eval.loss.SolutionLoss`; its
    per-item lists go to `item_losses.json`, not here)."""

    loss_per_token: float  # nats/token, lower is better
    ppl: float
    tokens: int  # scored tokens
    items: int


@dataclasses.dataclass
class ModelScore:
    """One scored model, a value of ablation.json's "models": `{"arm", "seed", "tokens",
    "steps", "loss": {benchmark: BenchLoss}, "accuracy"}` (`accuracy`: null unless
    `loss_eval.accuracy_limit` > 0)."""

    arm: Arm
    seed: Optional[int]  # None: the base model
    tokens: int  # training tokens (0: not trained)
    steps: int
    loss: Dict[str, BenchLoss]
    accuracy: Optional[Metrics] = None  # greedy CoT, benchmark -> setting -> metrics

    def as_dict(self) -> Dict[str, object]:
        d = dataclasses.asdict(self)
        d["arm"] = self.arm.value
        return d


class Verdict(str, Enum):
    synthetic_better = "synthetic_better"  # lower loss with synthetic data (interval / spread)
    raw_better = "raw_better"
    inconclusive = "inconclusive"  # the paired interval contains 0
    within_spread = "within_spread"  # |gap| <= the seed spread
    one_seed = "one_seed"  # an arm has one seed: no spread, no spread verdict


@dataclasses.dataclass
class ItemLosses:
    """One model on one benchmark: per item, summed NLL (nats) and scored tokens."""

    nll: List[float]
    tokens: List[int]


@dataclasses.dataclass
class PairedInterval:
    """The paired bootstrap's interval of the loss gap and its verdict."""

    gap: float  # token-weighted loss, raw - synthetic, averaged over the seed pairs
    low: float  # the 95% bootstrap interval of `gap`
    high: float
    seed_pairs: int
    items: int
    verdict: Verdict


@dataclasses.dataclass
class ArmComparison:
    """Both arms on one benchmark: per-seed losses, means, spreads, the gap and both verdicts.
    `as_dict()` (ablation.json's "comparison" values) adds the `verdict` property."""

    synthetic: List[float]
    raw: List[float]
    synthetic_mean: float
    raw_mean: float
    synthetic_spread: float
    raw_spread: float
    gap: float  # mean(raw) - mean(synthetic)
    spread: float  # the larger of the two arms' spreads
    spread_verdict: Verdict
    paired: Optional[PairedInterval] = None

    @property
    def verdict(self) -> Verdict:
        """The paired verdict when per-item losses were scored, else the spread rule's."""
        return self.paired.verdict if self.paired is not None else self.spread_verdict

    def as_dict(self) -> Dict[str, object]:
        d = dataclasses.asdict(self)
        d["spread_verdict"] = self.spread_verdict.value
        d["verdict"] = self.verdict.value
        if self.paired is not None:
            d["paired"]["verdict"] = self.paired.verdict.value
        return d


def _spread(xs: Sequence[float]) -> float:
    return max(xs) - min(xs) if xs else 0.0


def paired_bootstrap(pairs: Sequence[Tuple[ItemLosses, ItemLosses]],
                     draws: int = BOOTSTRAP_DRAWS, seed: int = 0,
                     level: float = LEVEL) -> PairedInterval:
    """Interval of the loss gap raw - synthetic over `(synthetic, raw)` seed pairs scored on the
    same items: each draw resamples the items (the same ones for every model) and the seed
    pairs, with replacement; the gap is the token-weighted loss difference averaged over the
    drawn pairs."""
    import numpy as np

    if not pairs:
        raise ValueError("paired_bootstrap: no seed pair")
    n = len(pairs[0][0].nll)
    for s, r in pairs:
        if not (len(s.nll) == len(r.nll) == len(s.tokens) == len(r.tokens) == n) or n == 0:
            raise ValueError(f"paired_bootstrap: every model must score the same items "
                             f"(got {len(s.nll)} and {len(r.nll)}, expected {n} > 0)")
    arr = {k: np.array([[getattr(p[j], k) for p in pairs] for j in (0, 1)], dtype=np.float64)
           for k in ("nll", "tokens")}  # [arm, pair, item]

    def gap(idx: np.ndarray) -> np.ndarray:  # idx: [draws, items] -> per draw and pair
        nll = arr["nll"][:, :, idx].sum(-1)  # [arm, pair, draws]
        tok = np.maximum(arr["tokens"][:, :, idx].sum(-1), 1.0)
        loss = nll / tok
        return (loss[1] - loss[0]).T  # [draws, pair]

    point = float(gap(np.arange(n)[None, :]).mean())
    rng = np.random.default_rng(seed)
    items = rng.integers(0, n, size=(draws, n))
    per_pair = gap(items)
    picks = rng.integers(0, len(pairs), size=(draws, len(pairs)))
    d = np.take_along_axis(per_pair, picks, axis=1).mean(1)
    lo, hi = (float(x) for x in np.quantile(d, [(1 - level) / 2, (1 + level) / 2]))
    verdict = (Verdict.synthetic_better if lo > 0 else Verdict.raw_better if hi < 0
               else Verdict.inconclusive)
    return PairedInterval(point, lo, hi, len(pairs), n, verdict)


def compare_arms(synthetic: Sequence[float], raw: Sequence[float],
                 pairs: Optional[Sequence[Tuple[ItemLosses, ItemLosses]]] = None
                 ) -> ArmComparison:
    """Compare the two arms' per-seed losses (lower is better); with `pairs` (per-item losses
    of seed-paired models) also the paired bootstrap interval. See the module docstring."""
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
                         spread, verdict, paired_bootstrap(pairs) if pairs else None)


def seed_pairs(rows: Dict[str, ModelScore], items: Dict[str, Dict[str, ItemLosses]],
               bench: str) -> List[Tuple[ItemLosses, ItemLosses]]:
    """(synthetic, raw) per-item losses on `bench` of the models trained at the same seed; when
    no seed is shared, the arms' models in row order."""
    by_arm: Dict[Arm, Dict[Optional[int], ItemLosses]] = {Arm.synthetic: {}, Arm.raw: {}}
    for name, row in rows.items():
        if row.arm in by_arm and bench in items.get(name, {}):
            by_arm[row.arm].setdefault(row.seed, items[name][bench])
    syn, raw = by_arm[Arm.synthetic], by_arm[Arm.raw]
    shared = [s for s in syn if s in raw]
    if shared:
        return [(syn[s], raw[s]) for s in shared]
    return list(zip(syn.values(), raw.values(), strict=False))


def compare_rows(rows: Dict[str, ModelScore],
                 items: Optional[Dict[str, Dict[str, ItemLosses]]] = None
                 ) -> Dict[str, ArmComparison]:
    """Per benchmark, the comparison of the scored models' `loss_per_token`, arms `synthetic`
    and `raw` (a `base` row is a reference, not compared); benchmarks scored in both arms only.
    `items`: model name -> benchmark -> its per-item losses (for the paired interval)."""
    per: Dict[str, Dict[Arm, List[float]]] = {}
    for row in rows.values():
        for bench, v in row.loss.items():
            per.setdefault(bench, {}).setdefault(row.arm, []).append(float(v.loss_per_token))
    return {b: compare_arms(a[Arm.synthetic], a[Arm.raw],
                            seed_pairs(rows, items, b) if items else None)
            for b, a in per.items() if a.get(Arm.synthetic) and a.get(Arm.raw)}
