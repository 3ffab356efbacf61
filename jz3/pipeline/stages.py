"""The JiuZhang3.0 recipe as stages of the runner (jz3.pipeline.runner).

snippets -> kd_seed -> distill -> influence -> kd_boost -> distill_boost -> synthesize -> filter
-> pack -> pretrain (+ pretrain_raw, the ablation baseline) -> sft -> evaluate -> ablation.
The JiuZhang3.0 recipe (jz3_* experiments) disables sft: its SFT data is the end of the
pretraining run (`stages.pretrain.data.tail_sources`), and evaluate takes pretrain's export.

Each stage declares an `Inputs` dataclass (one field per upstream stage, typed with that stage's
result; these fields are the graph) and returns a typed result. Each adapter here takes its
stage's own section (`ctx.cfg`) and its filled `Inputs` (`ctx.inputs`), calls the stage
module's function with those as arguments, and returns counts + small metrics (for the report)
+ the typed result (for the stages after it). No adapter writes into the config, guesses a file
name, or computes a key. What a section derives from its inputs (influence's synthesizer and
warmup model, pretrain_raw's step count) is filled by the stage's resolver (`resolve_*`), which
the runner applies for the plan and for the run alike; the stage function takes it as given.
Snippet roles: kd_seed sends a seeded random sample of `stages.kd_seed.count` snippets (across
all sources) to the teacher; influence draws `stages.influence.pool` other snippets at random for
the seed synthesizer to write for, and ranks what it wrote; kd_boost sends the top
`stages.kd_boost.count`; synthesize writes for every snippet (`synth.limit` caps it).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from jz3.ablation.results import PretrainRawResult
from jz3.ablation.verdict import Arm
from jz3.config.data import DataSource
from jz3.config.enums import TrainMode
from jz3.data.pack_stage import PackResult
from jz3.data.records import count_lines, read_records
from jz3.data.records import scalar_stats as _scalars
from jz3.data.snippets import SnippetsResult
from jz3.errors import StageFailed
from jz3.influence.stage import InfluenceStageResult
from jz3.pipeline.runner import (
    PipelineError,
    Resolving,
    Stage,
    StageContext,
    StageResult,
    required,
)
from jz3.train.result import TrainResult, export_path

if TYPE_CHECKING:  # imported by the stages that produce them (jz3.synth.filter takes seconds)
    from jz3.synth.filter import FilterResult
    from jz3.synth.run import SynthResult
    from jz3.teacher.kd import KDResult

log = logging.getLogger("jz3.pipeline.stages")


def _count(p: Path) -> int:
    if not p.exists():
        return 0
    if p.is_file():
        return count_lines(p)
    return sum(count_lines(f) for f in sorted(p.glob("*.jsonl")))


def _reasons(rejected: Path) -> Dict[str, int]:
    out: Dict[str, int] = {}
    if rejected.exists():
        for r in read_records(rejected):
            reason = str(r.get("reason", "unknown")).split(":")[0][:60]
            out[reason] = out.get(reason, 0) + 1
    return out


def snippets_file(snippets: Optional[SnippetsResult]) -> Path:
    return Path(required(snippets, "snippets").snippets)


def export_dir(train: Optional[TrainResult], name: str) -> str:
    """The HF export of a finished training stage."""
    t = required(train, name)
    if not t.hf_export_dir:
        raise StageFailed(f"{name}: the training run exported no model (trainer.export_hf)")
    return str(t.hf_export_dir)


# ---------------------------------------------------------------- snippets, teacher
def run_snippets(ctx: StageContext) -> StageResult:
    from jz3.data.snippets import run_snippets as snippets

    res = snippets(ctx.cfg.snippets, ctx.cfg.mixture, ctx.out)
    rej = Path(res.rejected)
    return StageResult(counts={"out": res.count, "rejected": _count(rej)},
                       outputs=["out/snippets.jsonl"],
                       metrics={"snippets": res.count, **_scalars(res.stats)}, result=res)


def _top_reasons(rejected: Path, k: int = 3) -> str:
    """`5 × teacher_failed: ... ClientConnectorError; 2 × ...`: the commonest full reasons."""
    n: Dict[str, int] = {}
    if rejected.exists():
        for r in read_records(rejected):
            reason = str(r.get("reason", "unknown"))[:160]
            n[reason] = n.get(reason, 0) + 1
    top = sorted(n.items(), key=lambda kv: -kv[1])[:k]
    return "; ".join(f"{c} × {r}" for r, c in top) or "no reason recorded"


def _no_kd_record(ctx: StageContext, requested: int, rejected: str, source: str) -> StageFailed:
    return StageFailed(f"{ctx.name}: 0 of {requested} requests gave a kd record: "
                       f"{_top_reasons(Path(rejected))} from {source}")


@dataclasses.dataclass
class KDSeedInputs:
    snippets: Optional[SnippetsResult] = None


def _kd(ctx: StageContext, snippets: Optional[SnippetsResult], ids: List[str],
        tag: str) -> StageResult:
    from jz3.teacher.kd import run_kd

    t = ctx.cfg.teacher
    res = run_kd(t, snippets_file(snippets), ctx.out, ids, stage=ctx.name)
    if res.written == 0:
        raise _no_kd_record(ctx, len(ids), res.rejected, t.base_url or f"the {t.kind.value} teacher")
    return StageResult(counts={"in": len(ids), "out": res.written, "rejected": res.rejected_count},
                       outputs=["out/kd.jsonl", "out/rejected.jsonl", "out/requested_ids.json"],
                       metrics={"kd_records": res.written, "requested": len(ids),
                                "rejected": res.rejected_count, "kind": tag,
                                **_scalars(res.stats)}, result=res)


def _kd_from_file(ctx: StageContext, tag: str) -> StageResult:
    """An existing KD set (`from_file`, the release's format) instead of teacher calls."""
    from jz3.teacher.kd import import_kd

    res = import_kd(ctx.cfg.from_file, ctx.out, keep_prompts=ctx.cfg.keep_prompts)
    if res.written == 0:
        raise _no_kd_record(ctx, res.requested, res.rejected, ctx.cfg.from_file)
    return StageResult(counts={"in": res.requested, "out": res.written,
                               "rejected": res.rejected_count},
                       outputs=["out/kd.jsonl", "out/rejected.jsonl", "out/requested_ids.json"],
                       metrics={"kd_records": res.written, "requested": res.requested,
                                "rejected": res.rejected_count, "kind": tag,
                                "from_file": ctx.cfg.from_file, **_scalars(res.stats)},
                       result=res)


def run_kd_seed(ctx: StageContext) -> StageResult:
    """A seeded random sample of `count` snippets across every source (not file order)."""
    from jz3.data.snippets import sample_ids

    if ctx.cfg.from_file:
        return _kd_from_file(ctx, "seed")
    inp: KDSeedInputs = ctx.inputs
    ids = sample_ids(snippets_file(inp.snippets), ctx.cfg.count, ctx.cfg.seed)
    return _kd(ctx, inp.snippets, ids, "seed")


def run_kd_boost(ctx: StageContext) -> StageResult:
    if ctx.cfg.from_file:
        return _kd_from_file(ctx, "boost")
    inp: KDBoostInputs = ctx.inputs
    path = Path(required(inp.influence, "influence").selected_snippets)
    sel = json.loads(path.read_text("utf-8"))
    if not sel:
        raise StageFailed(f"kd_boost: influence selected no snippet ({path} is empty)")
    return _kd(ctx, inp.snippets, sel[: ctx.cfg.count], "boost")


# ---------------------------------------------------------------- training
def _loss_curve(log_file: Optional[str]) -> List[List[float]]:
    """[[step, loss], ...] from the trainer's JSONL log (rows with `step` and `loss`)."""
    if not log_file or not Path(log_file).exists():
        return []
    return [[float(r["step"]), float(r["loss"])] for r in read_records(Path(log_file))
            if isinstance(r, dict) and "loss" in r and "step" in r]


def _train(ctx: StageContext, mode: TrainMode, sources: Optional[List[DataSource]] = None,
           init_from: Optional[str] = None, packed_dir: Optional[Path] = None,
           job: Any = None) -> StageResult:
    from jz3.train.entry import train_stage

    res = train_stage(job if job is not None else ctx.cfg, ctx.out, mode, sources=sources,
                      init_from=init_from, packed_dir=packed_dir)
    metrics = {"final_loss": res.final_loss, "steps": res.steps, "tokens": res.tokens_seen,
               "hf_export_dir": res.hf_export_dir, "loss_curve": _loss_curve(res.log_file),
               "train_wall_s": round(res.wall_s, 2)}
    return StageResult(counts={"steps": res.steps}, outputs=["out/train/hf"], metrics=metrics,
                       result=res)


def _kd_source(name: str, kd: Optional[KDResult]) -> DataSource:
    return DataSource(name, required(kd, name).kd, 1.0)


def _own_sources(sec: Any) -> bool:
    return bool(sec.data.sources)


@dataclasses.dataclass
class DistillInputs:
    kd_seed: Optional[KDResult] = None


def run_distill(ctx: StageContext) -> StageResult:
    inp: DistillInputs = ctx.inputs
    srcs = None if _own_sources(ctx.cfg) else [_kd_source("kd_seed", inp.kd_seed)]
    return _train(ctx, TrainMode.distill, srcs)


@dataclasses.dataclass
class DistillBoostInputs:
    kd_seed: Optional[KDResult] = None
    kd_boost: Optional[KDResult] = None
    distill: Optional[TrainResult] = None


def run_distill_boost(ctx: StageContext) -> StageResult:
    """The synthesizer on seed + boost KD: retrained from the base model (the paper), or
    continuing the seed synthesizer (`init_from_seed`)."""
    inp: DistillBoostInputs = ctx.inputs
    srcs = None if _own_sources(ctx.cfg) else [
        _kd_source("kd_seed", inp.kd_seed), _kd_source("kd_boost", inp.kd_boost)]
    init = export_dir(inp.distill, "distill") if ctx.cfg.init_from_seed else None
    return _train(ctx, TrainMode.distill, srcs, init_from=init)


# ---------------------------------------------------------------- influence
@dataclasses.dataclass
class InfluenceInputs:
    snippets: Optional[SnippetsResult] = None
    kd_seed: Optional[KDResult] = None
    distill: Optional[TrainResult] = None


@dataclasses.dataclass
class KDBoostInputs:
    snippets: Optional[SnippetsResult] = None
    influence: Optional[InfluenceStageResult] = None


def _influence_needs(sec: Any) -> List[str]:
    if sec.influence.candidates:
        return []
    return ["snippets", "kd_seed"] + ([] if sec.synth.model_path else ["distill"])


def planned_export(up: Any) -> str:
    """A training input's HF export: `export_path` of its output folder, fixed before it runs;
    once it has run, its result must name the same folder."""
    want = export_path(up.out)
    if up.result is not None:
        got = up.result.hf_export_dir
        if not got:
            raise StageFailed(f"{up.name}: the training run exported no model (trainer.export_hf)")
        if os.path.abspath(got) != os.path.abspath(want):
            raise PipelineError(f"{up.name} exported to {got}, the plan names {want}")
    return str(want)


def resolve_influence(sec: Any, r: Resolving) -> Any:
    """The seed synthesizer (`synth.model_path`, default: distill's export) and what follows
    from it (`jz3.influence.stage.resolve_section`)."""
    from jz3.influence.stage import resolve_section

    if sec.influence.candidates:
        return resolve_section(sec, None)
    return resolve_section(sec, sec.synth.model_path or planned_export(r.input("distill")))


def run_influence(ctx: StageContext) -> StageResult:
    """The seed synthesizer writes for `pool` random non-seed snippets; LESS ranks its text.

    With `influence.candidates` set, those records are ranked instead (standalone runs)."""
    from jz3.influence.stage import run_influence_stage

    inp: InfluenceInputs = ctx.inputs
    own = bool(ctx.cfg.influence.candidates)
    run = run_influence_stage(
        ctx.cfg, None if own else snippets_file(inp.snippets),
        None if own else Path(required(inp.kd_seed, "kd_seed").ids), ctx.out)
    cn, n = run.candidates, run.result.selected
    return StageResult(
        counts=run.result.counts,
        outputs=["out/selected_snippets.json", "out/influence/scores.jsonl"],
        metrics={**cn, "selected": n, "selected_fraction": n / max(cn.get("candidates", 0), 1),
                 "scores": run.scores, "pool_synth": run.pool_synth, "influence": run.influence},
        result=run.result)


# ---------------------------------------------------------------- synthesis, filter, pack
def _synth_needs(sec: Any) -> List[str]:
    return ([] if sec.synth.input else ["snippets"]) + \
        ([] if sec.synth.model_path else ["distill_boost"])


@dataclasses.dataclass
class SynthesizeInputs:
    snippets: Optional[SnippetsResult] = None
    distill_boost: Optional[TrainResult] = None


def _synth_args(ctx: StageContext) -> tuple[Path, Optional[str]]:
    s = ctx.cfg.synth
    inp: SynthesizeInputs = ctx.inputs
    snippets = Path(s.input) if s.input else snippets_file(inp.snippets)
    model = None if s.model_path else export_dir(inp.distill_boost, "distill_boost")
    return snippets, model


def synthesize_one_shard(ctx: StageContext) -> None:
    from jz3.synth.run import synthesize_shard

    snippets, model = _synth_args(ctx)
    assert ctx.shard is not None and ctx.num_shards is not None
    synthesize_shard(ctx.cfg.synth, snippets, ctx.out, ctx.shard, ctx.num_shards,
                     model_path=model)


def run_synthesize_merge(ctx: StageContext) -> StageResult:
    from jz3.synth.run import merge_shards

    snippets, _ = _synth_args(ctx)
    res = merge_shards(ctx.out, snippets, ctx.num_shards or 1, limit=ctx.cfg.synth.limit)
    rej = Path(res.rejected)
    return StageResult(counts={"in": res.snippets, "out": res.ok, "rejected": _count(rej)},
                       outputs=["out/synth.jsonl", "out/rejected.jsonl"],
                       metrics={"synth_in": res.snippets, "synth_out": res.ok,
                                "synth_rejected": _count(rej), "reject_reasons": _reasons(rej),
                                **_scalars(res.stats)}, result=res)


@dataclasses.dataclass
class FilterInputs:
    synthesize: Optional[SynthResult] = None


def run_filter(ctx: StageContext) -> StageResult:
    from jz3.synth.filter import run_filter as filt

    fc = ctx.cfg.filter
    inp: FilterInputs = ctx.inputs
    src = fc.input or required(inp.synthesize, "synthesize").records
    res = filt(fc, ctx.cfg.sandbox, src, ctx.out)
    rej = Path(res.rejected)
    return StageResult(counts={"in": res.read, "out": res.kept, "rejected": _count(rej)},
                       outputs=["out/cot", "out/tool", "out/rejected.jsonl"],
                       metrics={**_scalars(res.stats), "kept_by_source": res.kept_by_kind,
                                "reject_reasons": _reasons(rej)}, result=res)


def filtered_sources(filt: Optional[FilterResult]) -> List[DataSource]:
    """The filter's CoT and tool examples as two sources (weight 1 each; with
    `data.natural_mix` they mix by their sizes, as the release's concatenated corpus does)."""
    r = required(filt, "filter")
    srcs = [DataSource(name, path, 1.0) for name, path in (("synth_cot", r.cot),
                                                            ("synth_tool", r.tool))
            if _count(Path(path)) > 0]
    if not srcs:
        raise StageFailed(f"filter kept no cot/tool records: nothing to pretrain on (see "
                          f"{r.rejected} for the reasons)")
    return srcs


def _data_needs(sec: Any) -> List[str]:
    return [] if sec.sources else ["filter"]


@dataclasses.dataclass
class PackInputs:
    filter: Optional[FilterResult] = None


def run_pack(ctx: StageContext) -> StageResult:
    """Tokenize + pack the pretraining data (the section is `stages.pretrain.data`)."""
    from jz3.data.pack_stage import run_pack_stage

    inp: PackInputs = ctx.inputs
    srcs = list(ctx.cfg.sources) or filtered_sources(inp.filter)
    res = run_pack_stage(ctx.cfg, srcs, ctx.out)
    return StageResult(counts={"sources": len(srcs)}, outputs=["out"],
                       metrics={"weights": {s.name: s.weight for s in srcs}}, result=res)


def _pretrain_needs(sec: Any) -> List[str]:
    return [] if sec.data.sources else ["filter", "pack"]


@dataclasses.dataclass
class PretrainInputs:
    filter: Optional[FilterResult] = None
    pack: Optional[PackResult] = None


def run_pretrain(ctx: StageContext) -> StageResult:
    """Continued pretraining on the filtered synthetic data, reusing the pack stage's shards
    (the pack stage packs exactly this stage's data section)."""
    if _own_sources(ctx.cfg):
        return _train(ctx, TrainMode.pretrain)
    inp: PretrainInputs = ctx.inputs
    return _train(ctx, TrainMode.pretrain, filtered_sources(inp.filter),
                  packed_dir=Path(required(inp.pack, "pack").packed_dir))


def _raw_needs(sec: Any) -> List[str]:
    return ["snippets"] + (["pretrain"] if sec.match_pretrain_steps else []) \
        + (["filter"] if sec.extra_seeds and not sec.synthetic_sources else [])


@dataclasses.dataclass
class PretrainRawInputs:
    snippets: Optional[SnippetsResult] = None
    pretrain: Optional[TrainResult] = None
    filter: Optional[FilterResult] = None


def recipe_problems(cfg: Any) -> List[str]:
    """Before a run starts: the ablation arms (`stages.pretrain_raw` vs `stages.pretrain`)
    must differ only in their data and seed (`jz3.ablation.arms.check_same_recipe`)."""
    raw = cfg.stages.pretrain_raw
    if not raw.enabled or not (raw.match_pretrain_steps or raw.extra_seeds):
        return []
    from jz3.ablation.arms import check_same_recipe

    try:
        check_same_recipe(raw, cfg.stages.pretrain)
    except ValueError as e:
        return [str(e)]
    return []


def resolve_pretrain_raw(sec: Any, r: Resolving) -> Any:
    """With `match_pretrain_steps`: `trainer.max_steps` = pretrain's step count. Known from
    pretrain's section when its `trainer.max_steps` > 0 (a run that finishes runs exactly that
    many steps); from its result otherwise (deferred in the plan: `<pretrain.result.steps>`)."""
    if not sec.match_pretrain_steps:
        return sec
    up = r.input("pretrain")
    fixed = r.stages.pretrain.trainer.max_steps
    steps: Any = fixed if fixed > 0 else (up.result.steps if up.result is not None
                                          else up.deferred("steps"))
    if up.result is not None and up.result.steps != steps:
        raise PipelineError(f"pretrain ran {up.result.steps} steps, its trainer.max_steps "
                            f"says {steps}")
    return dataclasses.replace(sec, trainer=dataclasses.replace(sec.trainer, max_steps=steps))


def run_pretrain_raw(ctx: StageContext) -> StageResult:
    """The ablation baseline: same model and trainer, raw snippet text instead of synthetic;
    with `match_pretrain_steps`, exactly pretrain's step count; with `extra_seeds`, both arms
    again at each of those seeds (the synthetic arm on `synthetic_sources`, else the filter
    stage's output)."""
    from jz3.ablation.arms import raw_text_source, train_seed_runs

    sec = ctx.cfg  # `trainer.max_steps` resolved: pretrain's steps (`resolve_pretrain_raw`)
    inp: PretrainRawInputs = ctx.inputs
    raw_src = [raw_text_source(snippets_file(inp.snippets), ctx.out)]
    res = _train(ctx, TrainMode.pretrain, raw_src, job=sec)
    synthetic = list(sec.synthetic_sources) or (filtered_sources(inp.filter)
                                                 if sec.extra_seeds else [])
    runs = train_seed_runs(sec, ctx.out, raw_src, synthetic)
    res.metrics["seed"] = sec.trainer.seed
    res.metrics["seed_runs"] = [dataclasses.asdict(r) for r in runs]
    res.counts["models"] = 1 + len(runs)
    res.result = PretrainRawResult(**dataclasses.asdict(required(res.result, "pretrain_raw")),
                                   seed_runs=runs)
    return res


def _sft_needs(sec: Any) -> List[str]:
    return [] if sec.trainer.init_from else ["pretrain"]


@dataclasses.dataclass
class SFTInputs:
    pretrain: Optional[TrainResult] = None


def run_sft(ctx: StageContext) -> StageResult:
    if not ctx.cfg.data.sources:
        raise ValueError("stages.sft.data.sources is empty: the sft stage needs instruction data")
    inp: SFTInputs = ctx.inputs
    init = None if ctx.cfg.trainer.init_from else export_dir(inp.pretrain, "pretrain")
    return _train(ctx, TrainMode.sft, init_from=init)


# ---------------------------------------------------------------- evaluation, ablation
def _eval_needs(sec: Any) -> List[str]:
    return [] if sec.eval.model_path else ["sft" if sec.after_sft else "pretrain"]


def _evaluate(ecfg: Any, model_dir: str, out_dir: Path, run_name: str) -> Any:
    from jz3.eval.run import run_evaluation

    return run_evaluation(ecfg, model_dir, out_dir, run_name=run_name)


@dataclasses.dataclass
class EvaluateInputs:
    sft: Optional[TrainResult] = None
    pretrain: Optional[TrainResult] = None


def run_evaluate(ctx: StageContext) -> StageResult:
    e = ctx.cfg.eval
    inp: EvaluateInputs = ctx.inputs
    model = e.model_path or (export_dir(inp.sft, "sft") if ctx.cfg.after_sft
                             else export_dir(inp.pretrain, "pretrain"))
    res = _evaluate(e, model, ctx.out, ctx.run_dir.name)
    return StageResult(counts={"benchmarks": len(e.benchmarks), **_scalars(res.counts)},
                       outputs=["out"], metrics={"eval": res.metrics}, result=res)


@dataclasses.dataclass
class AblationInputs:
    pretrain: Optional[TrainResult] = None
    pretrain_raw: Optional[PretrainRawResult] = None


def run_ablation(ctx: StageContext) -> StageResult:
    """Synthetic-data pretraining vs raw-snippet pretraining at the same token budget (and the
    base model, `base_model`), scored and compared by `jz3.ablation.score`."""
    from jz3.ablation.score import ArmModel, ablation_json, score_models

    inp: AblationInputs = ctx.inputs
    pre = required(inp.pretrain, "pretrain")
    raw = required(inp.pretrain_raw, "pretrain_raw")
    models: Dict[str, ArmModel] = {}
    if ctx.cfg.base_model:
        models["base"] = ArmModel(Arm.base, None, ctx.cfg.base_model)
    for name, arm, t in (("pretrain", Arm.synthetic, pre), ("pretrain_raw", Arm.raw, raw)):
        models[name] = ArmModel(arm, t.seed, export_dir(t, name), t.tokens_seen, t.steps)
    for r in raw.seed_runs:
        models[f"{r.arm.value}_seed{r.seed}"] = ArmModel(r.arm, r.seed, r.hf_export_dir,
                                                         r.tokens, r.steps)
    res = score_models(models, ctx.cfg, ctx.out)
    ab = ablation_json(res.rows, res.comparison)  # as in ablation.json, with each verdict
    return StageResult(counts={"models": len(res.rows)},
                       outputs=["out/ablation.json", "out/item_losses.json"],
                       metrics={"ablation": ab["models"], "comparison": ab["comparison"]},
                       result=res)


def _enabled(sec: Any) -> bool:
    return bool(sec.enabled)


STAGES: List[Stage] = [
    Stage("snippets", run_snippets),
    Stage("kd_seed", run_kd_seed, KDSeedInputs,
          needs=lambda s: [] if s.from_file else ["snippets"]),
    Stage("distill", run_distill, DistillInputs,
          needs=lambda s: [] if _own_sources(s) else ["kd_seed"], own_weights=lambda s: True),
    Stage("influence", run_influence, InfluenceInputs, needs=_influence_needs,
          resolve=resolve_influence),
    Stage("kd_boost", run_kd_boost, KDBoostInputs,
          needs=lambda s: [] if s.from_file else ["snippets", "influence"]),
    Stage("distill_boost", run_distill_boost, DistillBoostInputs,
          needs=lambda s: ([] if _own_sources(s) else ["kd_seed", "kd_boost"])
          + (["distill"] if s.init_from_seed else []),
          own_weights=lambda s: not s.init_from_seed),
    Stage("synthesize", run_synthesize_merge, SynthesizeInputs,
          needs=_synth_needs, shard_fn=synthesize_one_shard),
    Stage("filter", run_filter, FilterInputs,
          needs=lambda s: [] if s.filter.input else ["synthesize"]),
    Stage("pack", run_pack, PackInputs, section="pretrain.data", needs=_data_needs),
    Stage("pretrain", run_pretrain, PretrainInputs, needs=_pretrain_needs,
          own_weights=lambda s: True),
    Stage("pretrain_raw", run_pretrain_raw, PretrainRawInputs,
          needs=_raw_needs, enabled=_enabled, own_weights=lambda s: True,
          resolve=resolve_pretrain_raw),
    Stage("sft", run_sft, SFTInputs, needs=_sft_needs, enabled=_enabled),
    Stage("evaluate", run_evaluate, EvaluateInputs, needs=_eval_needs),
    Stage("ablation", run_ablation, AblationInputs, enabled=_enabled),
]
STAGE_NAMES = [s.name for s in STAGES]
BY_NAME = {s.name: s for s in STAGES}
