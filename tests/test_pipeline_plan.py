"""The plan is what runs: every stage of a real experiment's graph, through the real runner.

Each stage's function is replaced by a stand-in that writes nothing and returns a typed result
of the stage's result type (a training stage: `trainer.max_steps` steps when > 0, else 7, and
its export at `export_path`, as `train_stage` guarantees). Everything else is the real thing:
the experiment's composed sections, each stage's `needs` and resolver, the plan the runner
writes, its check of each section against the plan before the stage runs, and the manifests.
So `plan.txt` must equal every manifest's `config` and `inputs`, deferred values (pretrain_raw's
step count when pretrain's follows `trainer.epochs`) excepted, which the manifest must resolve.
What the real stage functions do with their resolved sections is covered by
tests/test_pipeline_e2e.py (+exp=tiny_pipeline) and tests/test_scale_model.py (+exp=jz3_7b
scale=tiny), which run them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from jz3.config import compose
from jz3.pipeline.runner import (
    PLAN_FILE,
    PipelineError,
    Stage,
    StageContext,
    StageResult,
    read_plan,
    run_pipeline,
    run_stage,
)
from jz3.pipeline.stages import STAGES
from jz3.train.result import TrainResult, export_path

UNSET_STEPS = 7  # what a stand-in training stage "ran" when its steps follow trainer.epochs


def _result_types() -> Dict[str, Any]:
    """Stage -> its result type, read from the `Inputs` fields of the stages that consume it."""
    from jz3.synth.filter import FilterResult
    from jz3.synth.run import SynthResult
    from jz3.teacher.kd import KDResult

    out: Dict[str, Any] = {}
    for s in STAGES:
        mod = vars(__import__(s.inputs.__module__, fromlist=["_"]))
        ns = {**mod, "FilterResult": FilterResult, "SynthResult": SynthResult,
              "KDResult": KDResult}
        for name, hint in typing.get_type_hints(s.inputs, globalns=ns).items():
            out[name] = next(a for a in typing.get_args(hint) if a is not type(None))
    return out


def _value(hint: Any, name: str, ctx: StageContext) -> Any:
    if typing.get_origin(hint) is typing.Union:
        return None
    if hint is int:
        return 1
    if hint is float:
        return 0.0
    if hint is bool:
        return False
    return str(ctx.out / name)  # str and path fields


def _standin(result_type: Optional[type]):
    def run(ctx: StageContext) -> StageResult:
        if result_type is None:
            return StageResult(counts={"out": 0})
        kw = {f.name: _value(typing.get_type_hints(result_type)[f.name], f.name, ctx)
              for f in dataclasses.fields(result_type)
              if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        if issubclass(result_type, TrainResult):
            steps = ctx.cfg.trainer.max_steps
            kw.update(hf_export_dir=str(export_path(ctx.out)), steps=steps if steps > 0 else
                      UNSET_STEPS)
        return StageResult(counts={"out": 1}, result=result_type(**kw))
    return run


def standins() -> List[Stage]:
    types = _result_types()
    return [dataclasses.replace(s, fn=_standin(types.get(s.name)),
                                shard_fn=(lambda ctx: None) if s.shard_fn else None)
            for s in STAGES]


def _manifest(run: Path, stage: str) -> Dict[str, Any]:
    return json.loads((run / stage / "manifest.json").read_text())


def _run(tmp_path: Path, *over: str):
    run = tmp_path / "run"
    cfg = compose([*over, f"run_dir={run}"])
    stages = standins()
    statuses = run_pipeline(cfg, stages)
    assert {s.status for s in statuses} == {"ran"}
    return run, cfg, stages, [s.name for s in statuses]


EXPERIMENTS = {"demo": ["+exp=demo"], "jz3_7b-tiny": ["+exp=jz3_7b", "scale=tiny"],
               "tiny_pipeline": ["+exp=tiny_pipeline",
                                 "stages.pretrain_raw.match_pretrain_steps=true"]}


@pytest.mark.parametrize("exp", list(EXPERIMENTS))
def test_plan_equals_every_manifest(exp, tmp_path):
    run, _, _, names = _run(tmp_path, *EXPERIMENTS[exp])
    plan = read_plan(run)
    assert list(plan) == names  # every stage that ran, in graph order
    for name in names:
        m, p = _manifest(run, name), plan[name]
        assert p["inputs"] == list(m["inputs"]), name
        want = json.loads(json.dumps(p["config"]).replace('"<pretrain.result.steps>"',
                                                           str(UNSET_STEPS)))
        assert m["config"] == want, name
    root = os.path.abspath(run)
    inf = plan["influence"]["config"]  # the seed synthesizer, fixed before distill runs
    assert inf["synth"]["model_path"] == inf["model"]["path"] == f"{root}/distill/out/train/hf"
    assert inf["synth"]["limit"] is None  # the pool size is the limit
    if "pretrain_raw" in plan:  # the same steps as pretrain
        steps = _manifest(run, "pretrain")["result"]["steps"]
        assert _manifest(run, "pretrain_raw")["config"]["trainer"]["max_steps"] == steps
        planned = plan["pretrain_raw"]["config"]["trainer"]["max_steps"]
        pre = plan["pretrain"]["config"]["trainer"]["max_steps"]
        assert planned == (pre if pre > 0 else "<pretrain.result.steps>")


def test_demo_plan_defers_what_needs_pretrains_data(tmp_path):
    """demo: pretrain runs `epochs` over the synthetic data, so pretrain_raw's step count is a
    marker in the plan; a fixed `max_steps` is planned as it is."""
    run, *_ = _run(tmp_path, "+exp=demo")
    line = (run / PLAN_FILE).read_text().splitlines()
    raw = next(x for x in line if x.startswith("[plan] pretrain_raw "))
    assert '"max_steps": "<pretrain.result.steps>"' in raw
    run, *_ = _run(tmp_path / "fixed", "+exp=demo", "stages.pretrain.trainer.max_steps=11")
    assert read_plan(run)["pretrain_raw"]["config"]["trainer"]["max_steps"] == 11
    assert _manifest(run, "pretrain_raw")["config"]["trainer"]["max_steps"] == 11


def test_a_section_that_drifted_from_the_plan_stops_the_stage(tmp_path):
    run, cfg, stages, _ = _run(tmp_path, "+exp=demo")
    by = {s.name: s for s in stages}
    drifted = compose(["+exp=demo", f"run_dir={run}", "stages.pretrain.trainer.lr=0.5",
                       "stages.pretrain.data.seq_len=256"])
    before = _manifest(run, "pretrain")["finished_at"]
    with pytest.raises(PipelineError, match=r"stage 'pretrain' would run with a section that "
                       r"differs from its plan .*config\.data\.seq_len: planned 512, now 256; "
                       r"config\.trainer\.lr: planned 0\.003, now 0\.5"):
        run_stage(drifted, by["pretrain"])
    assert _manifest(run, "pretrain")["finished_at"] == before  # not run, not removed
    (run / PLAN_FILE).unlink()
    with pytest.raises(PipelineError, match="stage 'sft': no plan line"):
        run_stage(cfg, by["sft"], force=True)


def test_an_export_elsewhere_than_planned_stops_influence(tmp_path):
    stages = standins()
    distill = next(s for s in stages if s.name == "distill")

    def moved(ctx: StageContext) -> StageResult:
        res = distill.fn(ctx)
        res.result = dataclasses.replace(res.result, hf_export_dir=str(ctx.out / "elsewhere"))
        return res

    stages = [dataclasses.replace(s, fn=moved) if s.name == "distill" else s for s in stages]
    cfg = compose(["+exp=demo", f"run_dir={tmp_path / 'run'}", "pipeline.stages=[snippets,"
                   "kd_seed,distill,influence]"])
    with pytest.raises(PipelineError, match=r"distill exported to .*elsewhere, the plan names "
                       r".*distill/out/train/hf"):
        run_pipeline(cfg, stages)
