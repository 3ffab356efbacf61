"""`run_influence(cfg, candidates_path, out_dir) -> stats`: warmup, features, scores, selection.

Outputs under `out_dir`:
    warmup/ckpt-*/                    LoRA weights + Adam moments per warmup epoch
    features/candidates/part-*/       Adam features of the candidates (one shard per array task)
    features/targets/part-00000-of-00001/   plain-gradient features of the target set
    scores.jsonl {id, score}  selected.jsonl {id, score, rank}  rejected.jsonl  manifest.json
Steps (`influence.step`): warmup | extract (one shard) | score | all. A SLURM array runs
`step=extract` with the shard from the environment; `step=score` reports missing shards.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from jz3.config.enums import InfluenceStep, OnError
from jz3.config.root import JZ3Config
from jz3.data.records import (
    AtomicJsonlWriter,
    IOStats,
    Quarantine,
    RecordError,
    expand_paths,
    read_records,
    shard_from_env,
)
from jz3.influence.examples import Encoder, Example, example_from_record, load_examples
from jz3.influence.features import FeatureExtractor
from jz3.influence.score import less_scores, select
from jz3.influence.store import ShardWriter, merge_shards, shard_dir
from jz3.influence.warmup import build_feature_model, load_checkpoints, run_warmup
from jz3.pipeline.manifest import config_hash, write_manifest

log = logging.getLogger(__name__)


def load_candidates(spec: Any, rejected: Path, limit: Optional[int] = None) -> Tuple[List[Example], Dict[str, Any]]:
    """Candidates from kd/synth/snippet/train records; bad or duplicate ones go to rejected.jsonl."""
    stats = IOStats()
    out: List[Example] = []
    seen = set()
    rejected.unlink(missing_ok=True)
    with Quarantine(rejected) as q:
        for path in expand_paths(spec):
            recs = read_records(path, on_error=OnError.quarantine, quarantine=q, stats=stats)
            for line, rec in enumerate(recs, 1):
                try:
                    ex = example_from_record(rec, f"{path.stem}:{line}")
                except ValueError as e:
                    q.add(str(e), rec, file=str(path), line=line)
                    stats.reject("unusable record")
                    continue
                if ex.id in seen:
                    q.add(f"duplicate id {ex.id!r}", rec, file=str(path), line=line, field="id")
                    stats.reject("duplicate id")
                    continue
                seen.add(ex.id)
                out.append(ex)
                if limit is not None and len(out) >= limit:
                    return out, stats.as_dict()
    if not out:
        raise RecordError(str(spec), 0, "no usable candidate records")
    return out, stats.as_dict()


def _shard_slice(n: int, shard: int, num_shards: int) -> Tuple[int, int]:
    return n * shard // num_shards, n * (shard + 1) // num_shards


def _extractor(cfg: JZ3Config, warmup_dir: Path) -> Tuple[FeatureExtractor, Any]:
    from jz3.data.tokenizers import load_tokenizer

    ic = cfg.influence
    tok = load_tokenizer(cfg.data.tokenizer)
    model = build_feature_model(cfg, warmup_dir)
    return FeatureExtractor(model, Encoder(tok, ic.max_len), ic.proj_dim, ic.proj_seed,
                            ic.proj_kind, ic.factored, ic.proj_structure, ic.energy_alloc), tok


def extract_candidates(cfg: JZ3Config, examples: Sequence[Example], out_dir: Path,
                       shard: Optional[int] = None, num_shards: Optional[int] = None) -> Dict:
    """Adam features of this task's shard of the candidates (resumable)."""
    shard, num_shards = shard_from_env(shard, num_shards)
    lo, hi = _shard_slice(len(examples), shard, num_shards)
    part = examples[lo:hi]
    ckpts = load_checkpoints(out_dir / "warmup")
    path = shard_dir(out_dir / "features" / "candidates", shard, num_shards)
    writer = ShardWriter(path, [e.id for e in part], [e.subtask for e in part],
                         cfg.influence.proj_dim, [c.name for c in ckpts])
    if writer.done:
        log.info("candidate shard %d/%d already complete (%s)", shard, num_shards, path)
        return {"shard": shard, "num_shards": num_shards, "rows": len(part), "computed": 0}
    ext, _ = _extractor(cfg, out_dir / "warmup")
    n = ext.extract(part, ckpts, writer, adam=True, batch_size=cfg.influence.batch_size,
                    desc=f"candidates {shard}/{num_shards}")
    return {"shard": shard, "num_shards": num_shards, "rows": len(part), "computed": n}


def extract_targets(cfg: JZ3Config, out_dir: Path) -> Dict:
    ic = cfg.influence
    if not ic.targets:
        raise ValueError("influence.targets: no target files (e.g. GSM8K train)")
    targets = load_examples(ic.targets, limit=ic.target_max)
    ckpts = load_checkpoints(out_dir / "warmup")
    path = shard_dir(out_dir / "features" / "targets", 0, 1)
    writer = ShardWriter(path, [e.id for e in targets], [e.subtask for e in targets],
                         ic.proj_dim, [c.name for c in ckpts])
    if writer.done:
        return {"rows": len(targets), "computed": 0}
    ext, _ = _extractor(cfg, out_dir / "warmup")
    n = ext.extract(targets, ckpts, writer, adam=False, batch_size=ic.batch_size, desc="targets")
    return {"rows": len(targets), "computed": n}


def score_and_select(cfg: JZ3Config, out_dir: Path, num_shards: Optional[int] = None) -> Dict:
    """Merge candidate shards (MissingShardsError lists the missing ones), score, select."""
    ic = cfg.influence
    cand = merge_shards(out_dir / "features" / "candidates", num_shards)
    targ = merge_shards(out_dir / "features" / "targets", 1)
    ckpts = load_checkpoints(out_dir / "warmup")
    weights = {c.name: c.lr_mean for c in ckpts}
    scores = less_scores(cand, targ, weights)
    ids = cand.ids
    chosen = select(ids, scores, ic.top_k, ic.top_p)
    with AtomicJsonlWriter(out_dir / "scores.jsonl") as w:
        for i, s in zip(ids, scores, strict=True):
            w.write({"id": i, "score": float(s)})
    with AtomicJsonlWriter(out_dir / "selected.jsonl") as w:
        for rank, j in enumerate(chosen):
            w.write({"id": ids[j], "score": float(scores[j]), "rank": rank})
    return {"candidates": len(ids), "targets": len(targ.ids), "selected": len(chosen),
            "checkpoints": weights, "shards": len(cand.shards)}


def run_influence(cfg: JZ3Config, candidates_path: Any, out_dir: Any,
                  step: Optional[InfluenceStep] = None) -> Dict[str, Any]:
    """Run `step` (default `cfg.influence.step`) of the influence stage; returns its stats."""
    t0 = time.time()
    step = InfluenceStep(step or cfg.influence.step)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    examples, io = load_candidates(candidates_path, out / "rejected.jsonl",
                                   cfg.influence.candidate_max)
    stats: Dict[str, Any] = {"step": step.value, "records": io}
    if step in (InfluenceStep.all, InfluenceStep.warmup):
        stats["warmup"] = [c.name for c in run_warmup(cfg, examples, out / "warmup")]
    if step in (InfluenceStep.all, InfluenceStep.extract):
        shard, num = (0, 1) if step == InfluenceStep.all else (cfg.influence.shard,
                                                                cfg.influence.num_shards)
        stats["extract"] = extract_candidates(cfg, examples, out, shard, num)
    if step in (InfluenceStep.all, InfluenceStep.score):
        stats["targets"] = extract_targets(cfg, out)
        num = 1 if step == InfluenceStep.all else cfg.influence.num_shards
        stats["score"] = score_and_select(cfg, out, num)
        stats["wall_s"] = time.time() - t0
        write_manifest(out, "influence", config_hash(cfg.influence, cfg.model),
                       counts={"candidates": len(examples), "rejected": io.get("rejected", 0),
                               "selected": stats["score"]["selected"]},
                       outputs=["scores.jsonl", "selected.jsonl", "features"],
                       wall_s=stats["wall_s"], extra={"stats": json.loads(json.dumps(stats))})
    log.info("influence %s done: %s", step.value, {k: v for k, v in stats.items() if k != "records"})
    return stats
