"""The JiuZhang3.0 recipe as stages of the runner (jz3.pipeline.runner).

snippets -> kd_seed -> distill -> influence -> kd_boost -> distill_boost -> synthesize -> filter
-> pack -> pretrain (+ pretrain_raw, the ablation baseline) -> sft -> evaluate -> ablation.

Each stage reads its inputs from the finished stages before it (`ctx.inputs[name].out`), writes
under `runs/<exp>/<stage>/out/`, and returns counts and small metrics for the manifest and the
report. The stage modules (teacher, trainer, synthesis, ...) do the work and their own resume;
this file only wires paths and configs. Snippet roles: the first `teacher.num_seed` snippets are
the KD seed, the next `pipeline.influence_pool` are the boosting pool the seed synthesizer
writes for and influence ranks, and the first `synth.limit` (all by default) are synthesized.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from jz3.config.data import DataSource
from jz3.config.enums import TrainMode
from jz3.config.root import JZ3Config
from jz3.config.synth import SynthConfig
from jz3.data.records import AtomicJsonlWriter, atomic_write_text, count_lines, write_jsonl
from jz3.pipeline.runner import Stage, StageContext, StageOutput, StageResult

log = logging.getLogger("jz3.pipeline.stages")

def _fields(dc: type, prefix: str, exclude: Iterable[str]) -> List[str]:
    """Dotted names of a config dataclass's fields, minus `exclude` (for a stage's `reads`)."""
    return [f"{prefix}.{f.name}" for f in dataclasses.fields(dc) if f.name not in set(exclude)]


TRAIN_READS = ["seed", "model", "trainer", "deepspeed", "data.tokenizer", "data.seq_len",
               "data.add_bos", "data.add_eos", "data.seed"]


def _as_dict(stats: Any) -> Dict[str, Any]:
    if stats is None:
        return {}
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        return dataclasses.asdict(stats)
    if hasattr(stats, "as_dict"):
        return stats.as_dict()
    if isinstance(stats, dict):
        return dict(stats)
    return {"value": str(stats)}


def _scalars(d: Dict[str, Any]) -> Dict[str, Any]:
    """The JSON-friendly part of a stats dict (numbers, strings, small dicts of numbers)."""
    out: Dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, (int, float, str, bool)) or v is None:
            out[k] = v
        elif isinstance(v, dict) and all(isinstance(x, (int, float)) for x in v.values()):
            out[k] = dict(v)
    return out


def _read_jsonl(path: Path) -> Iterable[Dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _ids(path: Path, start: int = 0, stop: Optional[int] = None) -> List[str]:
    out = []
    for i, r in enumerate(_read_jsonl(path)):
        if stop is not None and i >= stop:
            break
        if i >= start:
            out.append(r["id"])
    return out


def snippets_file(inp: StageOutput) -> Path:
    return inp.out / "snippets.jsonl"


# ---------------------------------------------------------------- snippets, teacher
def run_snippets(ctx: StageContext) -> StageResult:
    from jz3.data.snippets import make_snippets

    out = ctx.out / "snippets.jsonl"
    stats = _as_dict(make_snippets(ctx.cfg.snippets, ctx.cfg.teacher.mixture, out))
    n = count_lines(out)
    rej = ctx.out / "rejected.jsonl"
    return StageResult(counts={"out": n, "rejected": count_lines(rej) if rej.exists() else 0},
                       outputs=["out/snippets.jsonl"], metrics={"snippets": n, **_scalars(stats)})


def _kd(ctx: StageContext, ids: List[str], tag: str) -> StageResult:
    from jz3.teacher.kd import build_kd

    snip = snippets_file(ctx.inputs["snippets"])
    stats = _as_dict(build_kd(ctx.cfg, snip, ctx.out, ids=ids))
    kd = ctx.out / "kd.jsonl"
    n = count_lines(kd) if kd.exists() else 0
    rej = ctx.out / "rejected.jsonl"
    r = count_lines(rej) if rej.exists() else 0
    return StageResult(counts={"in": len(ids), "out": n, "rejected": r},
                       outputs=["out/kd.jsonl"],
                       metrics={"kd_records": n, "requested": len(ids), "rejected": r,
                                "kind": tag, **_scalars(stats)})


def run_kd_seed(ctx: StageContext) -> StageResult:
    ids = _ids(snippets_file(ctx.inputs["snippets"]), 0, ctx.cfg.teacher.num_seed)
    return _kd(ctx, ids, "seed")


def run_kd_boost(ctx: StageContext) -> StageResult:
    sel = ctx.inputs["influence"].out / "selected_snippets.json"
    ids = json.loads(sel.read_text(encoding="utf-8"))[: ctx.cfg.teacher.num_boost]
    return _kd(ctx, ids, "boost")


# ---------------------------------------------------------------- training
def _loss_curve(log_file: Optional[str]) -> List[List[float]]:
    """[[step, loss], ...] from the trainer's JSONL log (rows with `step` and `loss`)."""
    if not log_file or not Path(log_file).exists():
        return []
    out = []
    for r in _read_jsonl(Path(log_file)):
        if isinstance(r, dict) and "loss" in r and "step" in r:
            out.append([float(r["step"]), float(r["loss"])])
    return out


def _train(ctx: StageContext, mode: TrainMode, sources: List[DataSource],
           init_from: Optional[str] = None, packed_dir: Optional[Path] = None) -> StageResult:
    from jz3.train.entry import run_training

    cfg = ctx.cfg
    cfg.trainer.mode = mode
    cfg.trainer.output_dir = str(ctx.out / "train")
    if init_from:
        cfg.trainer.init_from = init_from
    cfg.data.sources = sources
    cfg.data.packed_dir = str(packed_dir or ctx.out / "packed")
    res = run_training(cfg)
    if res.preempted or not res.hf_export_dir:
        raise RuntimeError(f"stage {ctx.name}: training stopped at step {res.steps} without an "
                           "HF export (preempted?); re-run to resume from its checkpoint")
    export = str(res.hf_export_dir)
    atomic_write_text(ctx.out / "export.txt", export + "\n")
    metrics = {"final_loss": res.final_loss, "steps": res.steps, "tokens": res.tokens_seen,
               "hf_export_dir": export, "loss_curve": _loss_curve(res.log_file),
               "train_wall_s": round(res.wall_s, 2)}
    return StageResult(counts={"steps": metrics["steps"]}, outputs=["out/export.txt"],
                       metrics=metrics)


def export_dir(inp: StageOutput) -> str:
    return inp.metrics["hf_export_dir"]


def run_distill(ctx: StageContext) -> StageResult:
    kd = ctx.inputs["kd_seed"].out / "kd.jsonl"
    return _train(ctx, TrainMode.distill, [DataSource("kd_seed", str(kd), 1.0)])


def run_distill_boost(ctx: StageContext) -> StageResult:
    """The synthesizer on seed + boost KD; from the seed synthesizer or from scratch (paper)."""
    srcs = [DataSource(n, str(ctx.inputs[n].out / "kd.jsonl"), 1.0)
            for n in ("kd_seed", "kd_boost")]
    init = export_dir(ctx.inputs["distill"]) if ctx.cfg.pipeline.boost_init_from_seed else None
    return _train(ctx, TrainMode.distill, srcs, init_from=init)


# ---------------------------------------------------------------- influence
def _subset(src: Path, ids: List[str], dst: Path) -> Path:
    """Write the snippet records with these ids (in file order) atomically, once."""
    if not dst.exists():
        want = set(ids)
        write_jsonl(dst, (r for r in _read_jsonl(src) if r["id"] in want))
    return dst


def _influence_candidates(pool: Path, synth_dir: Path, out: Path) -> Dict[str, int]:
    """One candidate per pool snippet: its prompt and the seed synthesizer's raw completion.

    Parsed or not: influence measures what training on this snippet's synthetic text does, and
    a tiny synthesizer parses few of its outputs. Candidate id = snippet id. Snippets without
    any completion go to `candidates_rejected.jsonl` with the reason."""
    from jz3.prompts import render

    comp: Dict[str, tuple] = {}
    for r in _read_jsonl(synth_dir / "synth.jsonl"):
        comp[r["snippet_id"]] = (r["completion"], True)
    rej = synth_dir / "rejected.jsonl"
    if rej.exists():
        for r in _read_jsonl(rej):
            if r.get("completion"):
                comp.setdefault(r["snippet_id"], (r["completion"], False))
    n = {"candidates": 0, "parsed": 0, "no_completion": 0}
    with AtomicJsonlWriter(out / "candidates.jsonl") as w, \
            AtomicJsonlWriter(out / "candidates_rejected.jsonl") as bad:
        for sn in _read_jsonl(pool):
            c = comp.get(sn["id"])
            if c is None or not c[0].strip():
                bad.write({"reason": "no_completion: the synthesizer wrote nothing usable",
                           "snippet_id": sn["id"]})
                n["no_completion"] += 1
                continue
            w.write({"id": sn["id"], "snippet_id": sn["id"], "prompt_type": sn["prompt_type"],
                     "prompt": render(sn["prompt_type"], sn["text"]), "completion": c[0],
                     "parsed": c[1]})
            n["candidates"] += 1
            n["parsed"] += int(c[1])
    return n


def run_influence(ctx: StageContext) -> StageResult:
    """The seed synthesizer writes for the pool snippets; influence ranks what it wrote."""
    from jz3.influence.run import run_influence as influence
    from jz3.synth.run import merge_shards, synthesize_shard

    cfg = ctx.cfg
    snip = snippets_file(ctx.inputs["snippets"])
    seed_n = cfg.teacher.num_seed
    pool = _subset(snip, _ids(snip, seed_n, seed_n + cfg.pipeline.influence_pool),
                   ctx.out / "pool_snippets.jsonl")
    cfg.synth.model_path = export_dir(ctx.inputs["distill"])
    cfg.synth.limit = None  # the pool size is the limit here
    cand_dir = ctx.out / "pool_synth"
    cand_dir.mkdir(exist_ok=True)
    synthesize_shard(cfg, pool, cand_dir, 0, 1)
    mstats = _as_dict(merge_shards(cand_dir, pool, 1))
    cn = _influence_candidates(pool, cand_dir, ctx.out)
    cands = ctx.out / "candidates.jsonl"
    cfg.model.path = export_dir(ctx.inputs["distill"])
    cfg.influence.out_dir = str(ctx.out / "influence")
    stats = _as_dict(influence(cfg, cands, ctx.out / "influence"))
    sel = [json.loads(x) for x in (ctx.out / "influence" / "selected.jsonl").read_text(
        encoding="utf-8").splitlines() if x.strip()]
    snippet_ids = list(dict.fromkeys(str(s["id"] if isinstance(s, dict) else s) for s in sel))
    atomic_write_text(ctx.out / "selected_snippets.json", json.dumps(snippet_ids))
    scores_file = ctx.out / "influence" / "scores.jsonl"
    scores = [float(r["score"]) for r in _read_jsonl(scores_file)] if scores_file.exists() else []
    return StageResult(
        counts={"pool": count_lines(pool), **cn, "selected": len(snippet_ids)},
        outputs=["out/selected_snippets.json", "out/influence/scores.jsonl"],
        metrics={**cn, "selected": len(snippet_ids),
                 "selected_fraction": len(snippet_ids) / max(cn["candidates"], 1),
                 "scores": scores, "pool_synth": _scalars(mstats),
                 "influence": _scalars(stats)})


def _synth_records(d: Path) -> Path:
    """The merged synth records file that `merge_shards` wrote in `d`."""
    for name in ("synth.jsonl", "merged.jsonl", "records.jsonl"):
        if (d / name).exists():
            return d / name
    raise FileNotFoundError(f"{d}: no merged synth records (synth.jsonl) after merge_shards")


# ---------------------------------------------------------------- synthesis, filter, pack
def _synth_input(ctx: StageContext) -> Path:
    """All snippets (`synth.limit` caps how many the synthesizer writes for)."""
    return snippets_file(ctx.inputs["snippets"])


def synthesize_one_shard(ctx: StageContext) -> None:
    from jz3.synth.run import synthesize_shard

    ctx.cfg.synth.model_path = export_dir(ctx.inputs["distill_boost"])
    assert ctx.shard is not None and ctx.num_shards is not None
    synthesize_shard(ctx.cfg, _synth_input(ctx), ctx.out, ctx.shard, ctx.num_shards)


def run_synthesize_merge(ctx: StageContext) -> StageResult:
    from jz3.synth.run import merge_shards

    snip = _synth_input(ctx)
    stats = _as_dict(merge_shards(ctx.out, snip, ctx.num_shards or 1, limit=ctx.cfg.synth.limit))
    merged = _synth_records(ctx.out)
    n = count_lines(merged)
    rej = ctx.out / "rejected.jsonl"
    r = count_lines(rej) if rej.exists() else 0
    n_in = int(stats.get("snippets", count_lines(snip)))  # synth.limit caps the input
    return StageResult(counts={"in": n_in, "out": n, "rejected": r},
                       outputs=[str(merged.relative_to(ctx.dir))],
                       metrics={"synth_in": n_in, "synth_out": n,
                                "synth_rejected": r, "reject_reasons": _reasons(rej),
                                **_scalars(stats)})


def _reasons(rejected: Path) -> Dict[str, int]:
    out: Dict[str, int] = {}
    if rejected.exists():
        for r in _read_jsonl(rejected):
            reason = str(r.get("reason", "unknown")).split(":")[0][:60]
            out[reason] = out.get(reason, 0) + 1
    return out


def filtered_sources(filter_out: Path) -> List[DataSource]:
    """The filter's {"input","output"} outputs, one source per prompt kind (cot, tool)."""
    srcs = []
    for kind in ("cot", "tool"):
        for cand in (filter_out / kind, filter_out / f"{kind}.jsonl"):
            if cand.exists() and _count_path(cand) > 0:
                srcs.append(DataSource(f"synth_{kind}", str(cand), 1.0))
                break
    if not srcs:
        raise FileNotFoundError(f"{filter_out}: the filter kept no cot/tool records; nothing to "
                                "pretrain on (see its rejected.jsonl for the reasons)")
    return srcs


def run_filter(ctx: StageContext) -> StageResult:
    from jz3.synth.filter import run_filter as filt

    syn = _synth_records(ctx.inputs["synthesize"].out)
    stats = _as_dict(filt(ctx.cfg, syn, ctx.out))
    rej = ctx.out / "rejected.jsonl"
    kept = {k: _count_path(ctx.out / k) if (ctx.out / k).exists() else 0
            for k in ("cot", "tool")}
    return StageResult(counts={"in": count_lines(syn), "out": sum(kept.values()),
                               "rejected": count_lines(rej) if rej.exists() else 0},
                       outputs=["out"],
                       metrics={**_scalars(stats), "kept_by_source": kept,
                                "reject_reasons": _reasons(rej)})


def _count_path(p: Path) -> int:
    if p.is_file():
        return count_lines(p)
    return sum(count_lines(f) for f in sorted(p.glob("*.jsonl")))


def run_pack(ctx: StageContext) -> StageResult:
    from jz3.data.packing import pack_sources
    from jz3.data.tokenizers import load_tokenizer

    cfg = ctx.cfg
    cfg.data.sources = filtered_sources(ctx.inputs["filter"].out)
    tok = load_tokenizer(cfg.data.tokenizer)
    stats = pack_sources(cfg.data, tok, ctx.out)
    return StageResult(counts={"sources": len(cfg.data.sources)}, outputs=["out"],
                       metrics=_scalars(_as_dict(stats)) if not isinstance(stats, Path) else {})


def _packed_matches(cfg: JZ3Config, packed: Path) -> bool:
    """Whether `packed` (the pack stage's output) is exactly what `cfg.data` would pack."""
    from jz3.data.packing import read_meta, source_hash, tokenizer_fingerprint
    from jz3.data.tokenizers import load_tokenizer

    fp = tokenizer_fingerprint(load_tokenizer(cfg.data.tokenizer))
    for s in cfg.data.sources:
        meta = read_meta(packed / s.name)
        if meta is None or meta.get("config_hash") != source_hash(s, fp, cfg.data):
            return False
    return True


def run_pretrain(ctx: StageContext) -> StageResult:
    """Continued pretraining on the filtered synthetic data, reusing the pack stage's shards."""
    ctx.cfg.data.sources = filtered_sources(ctx.inputs["filter"].out)
    packed = ctx.inputs["pack"].out
    reuse = _packed_matches(ctx.cfg, packed)
    if not reuse:
        log.info("pretrain: data settings differ from the pack stage's; packing again")
    return _train(ctx, TrainMode.pretrain, ctx.cfg.data.sources,
                  packed_dir=packed if reuse else None)


def run_pretrain_raw(ctx: StageContext) -> StageResult:
    """The ablation baseline: same model and trainer, raw snippet text instead of synthetic."""
    raw = ctx.out / "raw_text.jsonl"
    if not raw.exists():
        write_jsonl(raw, ({"text": r["text"]} for r in _read_jsonl(
            snippets_file(ctx.inputs["snippets"]))))
    return _train(ctx, TrainMode.pretrain, [DataSource("raw_snippets", str(raw), 1.0)])


def run_sft(ctx: StageContext) -> StageResult:
    srcs = [DataSource(Path(p).stem, p, 1.0) for p in ctx.cfg.pipeline.sft_sources]
    if not srcs:
        raise ValueError("pipeline.sft_sources is empty: the sft stage needs instruction data")
    return _train(ctx, TrainMode.sft, srcs, init_from=export_dir(ctx.inputs["pretrain"]))


# ---------------------------------------------------------------- evaluation, ablation
def _evaluate(cfg: JZ3Config, model_dir: str, out_dir: Path) -> Dict[str, Any]:
    from jz3.eval.runner import evaluate

    cfg.eval.model_path = model_dir
    cfg.eval.out_dir = str(out_dir)
    return _as_dict(evaluate(cfg))


def run_evaluate(ctx: StageContext) -> StageResult:
    res = _evaluate(ctx.cfg, export_dir(ctx.inputs["sft"]), ctx.out)
    return StageResult(counts={"benchmarks": len(ctx.cfg.eval.benchmarks)}, outputs=["out"],
                       metrics={"eval": res})


def run_ablation(ctx: StageContext) -> StageResult:
    """Synthetic-data pretraining vs raw-snippet pretraining at the same token budget."""
    from jz3.pipeline.loss_eval import evaluate_losses

    le = ctx.cfg.pipeline.loss_eval
    out: Dict[str, Any] = {}
    for name in ("pretrain", "pretrain_raw"):
        model = export_dir(ctx.inputs[name])
        row: Dict[str, Any] = {"tokens": ctx.inputs[name].metrics.get("tokens"),
                               "steps": ctx.inputs[name].metrics.get("steps"),
                               "loss": evaluate_losses(model, ctx.cfg.eval.data_dir, le.benchmarks,
                                                       le.limit, le.max_len, le.batch_size)}
        if le.accuracy_limit > 0:
            cfg = dataclasses.replace(ctx.cfg, eval=dataclasses.replace(
                ctx.cfg.eval, benchmarks=list(le.benchmarks), settings=["cot"],
                limit=le.accuracy_limit))
            row["accuracy"] = _evaluate(cfg, model, ctx.out / f"acc_{name}")
        out[name] = row
    atomic_write_text(ctx.out / "ablation.json", json.dumps(out, indent=2))
    return StageResult(counts={"models": 2}, outputs=["out/ablation.json"],
                       metrics={"ablation": out})


# what generation reads: the synth section without the filter and paths the stage sets itself
SYNTH_READS = _fields(SynthConfig, "synth", ("filter", "input", "out_dir", "model_path",
                                             "shard", "num_shards"))

STAGES: List[Stage] = [
    Stage("snippets", run_snippets, reads=["snippets", "teacher.mixture"]),
    Stage("kd_seed", run_kd_seed, inputs=["snippets"], reads=["teacher"]),
    Stage("distill", run_distill, inputs=["kd_seed"], reads=TRAIN_READS),
    Stage("influence", run_influence, inputs=["snippets", "distill"],
          reads=["influence", *SYNTH_READS, "teacher.num_seed", "pipeline.influence_pool",
                 "data.tokenizer", "seed"]),
    Stage("kd_boost", run_kd_boost, inputs=["snippets", "influence"], reads=["teacher"]),
    Stage("distill_boost", run_distill_boost, inputs=["kd_seed", "kd_boost", "distill"],
          reads=TRAIN_READS + ["pipeline.boost_init_from_seed"]),
    Stage("synthesize", run_synthesize_merge, inputs=["snippets", "distill_boost"],
          reads=SYNTH_READS + ["pipeline.synth_shards"],
          shard_fn=synthesize_one_shard, shards_key="pipeline.synth_shards"),
    Stage("filter", run_filter, inputs=["synthesize"], reads=["synth.filter"]),
    Stage("pack", run_pack, inputs=["filter"], reads=["data"]),
    Stage("pretrain", run_pretrain, inputs=["filter", "pack"], reads=TRAIN_READS),
    Stage("pretrain_raw", run_pretrain_raw, inputs=["snippets", "pretrain"], reads=TRAIN_READS,
          enabled=lambda cfg: cfg.pipeline.ablation),
    Stage("sft", run_sft, inputs=["pretrain"], reads=TRAIN_READS + ["pipeline.sft_sources"]),
    Stage("evaluate", run_evaluate, inputs=["sft"], reads=["eval"]),
    Stage("ablation", run_ablation, inputs=["pretrain", "pretrain_raw"],
          reads=["pipeline.loss_eval", "eval.data_dir"], enabled=lambda cfg: cfg.pipeline.ablation),
]
STAGE_NAMES = [s.name for s in STAGES]
