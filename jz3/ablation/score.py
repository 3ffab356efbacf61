"""Score the ablation's models: reference-solution loss per benchmark item (every item unless
`loss_eval.limit`), greedy CoT accuracy on the first `loss_eval.accuracy_limit` items, and the
verdict (`jz3.ablation.verdict`). Each model's scores are kept under `out/scores/` as soon as
they exist, so an interrupted stage resumes at the next model."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Dict, Optional

from jz3.ablation.results import AblationResult
from jz3.ablation.verdict import Arm, ArmComparison, BenchLoss, ItemLosses, ModelScore, compare_rows
from jz3.config.enums import EvalSetting
from jz3.config.stages import AblationStage
from jz3.data.records import atomic_write_text

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ArmModel:
    """One model to score: its arm, seed (None for the base model) and training budget."""

    arm: Arm
    seed: Optional[int]
    model: str  # HF folder
    tokens: int = 0
    steps: int = 0


def _loss(name: str, m: ArmModel, sec: AblationStage, out: Path) -> Dict[str, Any]:
    """benchmark -> {loss_per_token, ppl, tokens, items, item_nll, item_tokens} of one model."""
    from jz3.eval.loss import evaluate_losses

    done = out / "scores" / f"{name}.loss.json"
    if done.exists():
        return json.loads(done.read_text(encoding="utf-8"))
    le = sec.loss_eval
    loss = evaluate_losses(m.model, sec.eval.data_dir, le.benchmarks, le.limit, le.max_len,
                           le.batch_size, per_item=True, precision=le.precision)
    done.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(done, json.dumps(loss))
    for b, v in loss.items():
        log.info("ablation %s %s: %.4f nats/token over %d items", name, b, v["loss_per_token"],
                 v["items"])
    return loss


def ablation_json(rows: Dict[str, ModelScore], comparison: Dict[str, ArmComparison]
                  ) -> Dict[str, Any]:
    """The content of ablation.json (see `AblationResult`), also the stage's manifest metrics."""
    return {"models": {n: r.as_dict() for n, r in rows.items()},
            "comparison": {b: c.as_dict() for b, c in comparison.items()}}


def score_models(models: Dict[str, ArmModel], sec: AblationStage, out: Path) -> AblationResult:
    """Every model's loss (and accuracy), the comparison per benchmark; writes
    `out/ablation.json` ({"models", "comparison"}) and `out/item_losses.json`."""
    from jz3.eval.run import run_evaluation

    le = sec.loss_eval
    rows: Dict[str, ModelScore] = {}
    items: Dict[str, Dict[str, ItemLosses]] = {}  # model -> benchmark -> per-item losses
    for name, m in models.items():
        loss = _loss(name, m, sec, out)
        items[name] = {b: ItemLosses(v.pop("item_nll"), v.pop("item_tokens"))
                       for b, v in loss.items()}
        row = ModelScore(m.arm, m.seed, m.tokens, m.steps,
                         {b: BenchLoss(**v) for b, v in loss.items()})
        if le.accuracy_limit > 0:
            ecfg = dataclasses.replace(sec.eval, benchmarks=list(le.benchmarks),
                                       settings=[EvalSetting.cot], limit=le.accuracy_limit)
            row.accuracy = run_evaluation(ecfg, m.model, out / f"acc_{name}",
                                          run_name=f"ablation-{name}").metrics
        rows[name] = row
    comparison = compare_rows(rows, items)
    atomic_write_text(out / "ablation.json",
                      json.dumps(ablation_json(rows, comparison), indent=2))
    atomic_write_text(out / "item_losses.json", json.dumps(
        {n: {b: dataclasses.asdict(v) for b, v in per.items()} for n, per in items.items()}))
    return AblationResult(str(out / "ablation.json"), rows, comparison)
