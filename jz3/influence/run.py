"""`run_influence(...) -> InfluenceResult`: the influence stage (LESS warmup, features, scores,
selection) as a function of its own config sections and input paths.

Outputs under `out_dir`:
    warmup/ckpt-*/                    LoRA weights + Adam moments per warmup epoch
    warmup/data.jsonl, warmup/train/  the warmup's training data and trainer folder
    features/candidates/part-*/       Adam features of the candidates (one shard per array task)
    features/targets/part-00000-of-00001/   plain-gradient features of the target subtasks
    scores.jsonl {id, score}  selected.jsonl {id, score, rank}
    rejected.jsonl {reason, file, line, field, record}: unusable candidate lines
Steps (`influence.step`): warmup | extract (one shard) | score | all. A SLURM array runs
`step=extract` with the shard from the environment; `step=score` reports missing shards.
Provenance (manifests, cache keys) belongs to the pipeline runner, not to this module.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from jz3.config.data import DataConfig
from jz3.config.deepspeed import DeepSpeedConfig
from jz3.config.enums import InfluenceStep
from jz3.config.influence import InfluenceConfig
from jz3.config.model import ModelConfig
from jz3.config.trainer import TrainerConfig
from jz3.config.validate import check
from jz3.data.records import (
    AtomicJsonlWriter,
    PathLike,
    Quarantine,
    RecordError,
    expand_paths,
    shard_from_env,
)
from jz3.influence.examples import (
    Encoder,
    Example,
    example_from_record,
    load_targets,
    numbered_records,
)
from jz3.influence.features import FeatureExtractor
from jz3.influence.score import less_scores, normalised, select
from jz3.influence.store import ShardWriter, merge_shards, shard_dir
from jz3.influence.warmup import CKPT_PREFIX, build_feature_model, load_checkpoints, run_warmup

log = logging.getLogger(__name__)


@dataclass
class CandidateCounts:
    """Lines of the candidate files: `read` = `used` + `rejected` (+ `beyond_limit` unread)."""

    read: int = 0
    used: int = 0
    rejected: int = 0
    reasons: Dict[str, int] = field(default_factory=dict)
    beyond_limit: bool = False  # influence.candidate_max stopped reading early

    def reject(self, reason: str) -> None:
        self.rejected += 1
        key = reason.split(":", 1)[0]
        self.reasons[key] = self.reasons.get(key, 0) + 1


@dataclass
class InfluenceResult:
    """What one `run_influence` call did and wrote (paths are None for steps not run)."""

    step: InfluenceStep
    out_dir: Path
    candidates: CandidateCounts
    rejected_path: Path
    warmup_dir: Path
    checkpoints: List[str] = field(default_factory=list)
    warmup: Dict[str, Any] = field(default_factory=dict)  # effective warmup hyperparameters
    extract: Dict[str, int] = field(default_factory=dict)  # shard, num_shards, rows, computed
    targets: Dict[str, int] = field(default_factory=dict)  # subtask -> target examples
    checkpoint_weights: Dict[str, float] = field(default_factory=dict)  # normalised mean lr
    scores_path: Optional[Path] = None
    selected_path: Optional[Path] = None
    selected: int = 0
    shards: int = 0
    wall_s: float = 0.0

    def counts(self) -> Dict[str, int]:
        return {"candidate_lines": self.candidates.read, "candidates": self.candidates.used,
                "rejected": self.candidates.rejected, "selected": self.selected,
                **{f"targets.{k}": v for k, v in self.targets.items()}}


def load_candidates(spec: PathLike | Sequence[PathLike], rejected: Path,
                    limit: Optional[int] = None) -> Tuple[List[Example], CandidateCounts]:
    """Candidates from kd/synth/snippet/train records; unusable or duplicate lines go to
    `rejected` with their file and line number (blank lines are not records)."""
    counts = CandidateCounts()
    out: List[Example] = []
    seen: Dict[str, str] = {}
    rejected.unlink(missing_ok=True)
    with Quarantine(rejected) as q:
        for path in expand_paths(spec):
            for line, rec, err in numbered_records(path):
                if limit is not None and len(out) >= limit:
                    counts.beyond_limit = True
                    break
                counts.read += 1
                if err is not None:
                    q.add(err, rec, file=str(path), line=line)
                    counts.reject(err)
                    continue
                try:
                    ex = example_from_record(rec, f"{path.stem}:{line}")
                except ValueError as e:
                    q.add(f"unusable record: {e}", rec, file=str(path), line=line)
                    counts.reject("unusable record")
                    continue
                if ex.id in seen:
                    q.add(f"duplicate id {ex.id!r} (first at {seen[ex.id]})", rec, file=str(path),
                          line=line, field="id")
                    counts.reject("duplicate id")
                    continue
                seen[ex.id] = f"{path}:{line}"
                out.append(ex)
                counts.used += 1
    if not out:
        raise RecordError(str(spec), 0, "no usable candidate records")
    assert counts.read == counts.used + counts.rejected
    return out, counts


def _shard_slice(n: int, shard: int, num_shards: int) -> Tuple[int, int]:
    return n * shard // num_shards, n * (shard + 1) // num_shards


@dataclass
class _Ctx:
    """The stage's sections, as one value passed between the steps."""

    seed: int
    model: ModelConfig
    trainer: TrainerConfig
    deepspeed: DeepSpeedConfig
    data: DataConfig
    ic: InfluenceConfig
    out: Path

    def extractor(self) -> FeatureExtractor:
        from jz3.data.tokenizers import load_tokenizer

        ic = self.ic
        tok = load_tokenizer(self.data.tokenizer)
        model = build_feature_model(self.model, ic.lora, self.out / "warmup")
        return FeatureExtractor(model, Encoder(tok, ic.max_len), ic.proj_dim, ic.proj_seed,
                                ic.proj_kind, ic.factored, ic.proj_structure, ic.energy_alloc)


def extract_candidates(ctx: _Ctx, examples: Sequence[Example], shard: Optional[int] = None,
                       num_shards: Optional[int] = None) -> Dict[str, int]:
    """Adam features of this task's shard of the candidates (resumable)."""
    shard, num_shards = shard_from_env(shard, num_shards)
    lo, hi = _shard_slice(len(examples), shard, num_shards)
    part = examples[lo:hi]
    ckpts = load_checkpoints(ctx.out / "warmup")
    path = shard_dir(ctx.out / "features" / "candidates", shard, num_shards)
    writer = ShardWriter(path, [e.id for e in part], [e.subtask for e in part],
                         ctx.ic.proj_dim, [c.name for c in ckpts])
    if writer.done:
        log.info("candidate shard %d/%d already complete (%s)", shard, num_shards, path)
        return {"shard": shard, "num_shards": num_shards, "rows": len(part), "computed": 0}
    n = ctx.extractor().extract(part, ckpts, writer, adam=True, batch_size=ctx.ic.batch_size,
                                desc=f"candidates {shard}/{num_shards}")
    return {"shard": shard, "num_shards": num_shards, "rows": len(part), "computed": n}


def extract_targets(ctx: _Ctx) -> Dict[str, int]:
    """Plain-gradient features of every target subtask; returns examples per subtask."""
    ic = ctx.ic
    if not ic.targets:
        raise ValueError("influence.targets: no target files (e.g. GSM8K train, MATH train)")
    targets = load_targets(ic.targets, ic.target_names, ic.target_max)
    per: Dict[str, int] = {}
    for t in targets:
        per[t.subtask] = per.get(t.subtask, 0) + 1
    ckpts = load_checkpoints(ctx.out / "warmup")
    path = shard_dir(ctx.out / "features" / "targets", 0, 1)
    writer = ShardWriter(path, [e.id for e in targets], [e.subtask for e in targets],
                         ic.proj_dim, [c.name for c in ckpts])
    if not writer.done:
        ctx.extractor().extract(targets, ckpts, writer, adam=False, batch_size=ic.batch_size,
                                desc="targets")
    return per


def score_and_select(ctx: _Ctx, res: InfluenceResult, num_shards: Optional[int]) -> None:
    """Merge candidate shards (MissingShardsError lists the missing ones), score, select."""
    ic = ctx.ic
    cand = merge_shards(ctx.out / "features" / "candidates", num_shards)
    targ = merge_shards(ctx.out / "features" / "targets", 1)
    ckpts = load_checkpoints(ctx.out / "warmup")
    weights = {c.name: c.lr_mean for c in ckpts}
    scores = less_scores(cand, targ, weights)
    ids = cand.ids
    chosen = select(ids, scores, ic.top_k, ic.top_p)
    res.scores_path, res.selected_path = ctx.out / "scores.jsonl", ctx.out / "selected.jsonl"
    with AtomicJsonlWriter(res.scores_path) as w:
        for i, s in zip(ids, scores, strict=True):
            w.write({"id": i, "score": float(s)})
    with AtomicJsonlWriter(res.selected_path) as w:
        for rank, j in enumerate(chosen):
            w.write({"id": ids[j], "score": float(scores[j]), "rank": rank})
    res.selected, res.shards = len(chosen), len(cand.shards)
    res.checkpoint_weights = normalised(weights)


def run_influence(*, seed: int, model: ModelConfig, trainer: TrainerConfig,
                  deepspeed: DeepSpeedConfig, data: DataConfig, influence: InfluenceConfig,
                  candidates: PathLike | Sequence[PathLike], out_dir: PathLike,
                  step: Optional[InfluenceStep] = None) -> InfluenceResult:
    """Run `step` (default `influence.step`) of the influence stage.

    `model`/`trainer`/`deepspeed`/`data` are the stage's warmup sections (LoRA on `model`,
    trained with `trainer` at `data.seq_len` tokens on a `data.tokenizer` encoding);
    `candidates` are kd/synth/snippet records; everything is written under `out_dir`."""
    check(influence, "influence")
    t0 = time.time()
    step = InfluenceStep(step or influence.step)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx = _Ctx(seed, model, trainer, deepspeed, data, influence, out)
    examples, counts = load_candidates(candidates, out / "rejected.jsonl", influence.candidate_max)
    log.info("influence candidates: %d lines read, %d used, %d rejected %s%s", counts.read,
             counts.used, counts.rejected, counts.reasons,
             " (stopped at influence.candidate_max)" if counts.beyond_limit else "")
    res = InfluenceResult(step=step, out_dir=out, candidates=counts,
                          rejected_path=out / "rejected.jsonl", warmup_dir=out / "warmup")
    if step in (InfluenceStep.all, InfluenceStep.warmup):
        ck = run_warmup(seed=seed, model=model, trainer=trainer, deepspeed=deepspeed, data=data,
                        influence=influence, examples=examples, out_dir=out / "warmup",
                        summary=res.warmup)
        res.checkpoints = [c.name for c in ck]
    if step in (InfluenceStep.all, InfluenceStep.extract):
        shard, num = (0, 1) if step == InfluenceStep.all else (influence.shard, influence.num_shards)
        res.extract = extract_candidates(ctx, examples, shard, num)
    if step in (InfluenceStep.all, InfluenceStep.score):
        res.targets = extract_targets(ctx)
        num = 1 if step == InfluenceStep.all else influence.num_shards
        score_and_select(ctx, res, num)
    if not res.checkpoints:
        res.checkpoints = sorted(d.parent.name for d in (out / "warmup").glob(f"{CKPT_PREFIX}*/meta.json"))
    res.wall_s = time.time() - t0
    log.info("influence %s done in %.1fs: %s", step.value, res.wall_s, res.counts())
    return res
