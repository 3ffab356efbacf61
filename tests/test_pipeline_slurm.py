"""Cluster mode: the dry run lists every job with its resources; a real submission of small
stand-in stages to a local SLURM cluster (tests/slurm_cluster.py) runs an array + merge chain."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from jz3.config import compose
from jz3.pipeline.runner import Stage, StageContext, StageResult, read_plan
from jz3.pipeline.slurm import pin_shards, plan_jobs, submit_jobs
from jz3.pipeline.stages import STAGE_NAMES, STAGES
from tests.slurm_cluster import slurm_cluster  # noqa: F401

# jz3_7b leaves the raw-snippet ablation off (paper scale) and has no separate sft run (its SFT
# data ends the pretraining run, as in the release); every other stage runs
PAPER_STAGES = [s for s in STAGE_NAMES if s not in ("pretrain_raw", "ablation", "sft")]


def test_dry_run_plans_every_stage_with_its_resources(tmp_path, capsys):
    cfg = compose(["+exp=jz3_7b", "launcher=slurm", "launcher.dry_run=true",
                   f"run_dir={tmp_path}", "launcher.partition=gpu"])
    cfg = pin_shards(cfg, STAGES)
    jobs = plan_jobs(cfg, STAGES)
    names = [j.name for j in jobs]
    assert [j.stage for j in jobs if j.kind != "merge"] == PAPER_STAGES
    syn = next(j for j in jobs if j.kind == "array")
    assert syn.stage == "synthesize" and syn.array == 256 and syn.params["gpus_per_node"] == 1
    assert syn.after == ["snippets", "distill_boost"]
    merge = next(j for j in jobs if j.kind == "merge")
    assert merge.after == [syn.name] and names.index("filter") > names.index(merge.name)
    pre = next(j for j in jobs if j.name == "pretrain")
    assert (pre.params["nodes"], pre.params["gpus_per_node"], pre.params["tasks_per_node"]) == (
        8, 8, 8)
    assert pre.params["slurm_partition"] == "gpu" and pre.after == ["filter", "pack"]
    assert next(j for j in jobs if j.name == "evaluate").after == ["pretrain"]
    submit_jobs(cfg, jobs, STAGES)  # dry run: prints, submits nothing
    out = capsys.readouterr().out.splitlines()
    plan = [x for x in out if x.startswith("[plan] ")]  # the plan first, then the jobs
    assert [x.split(" ")[1] for x in plan] == PAPER_STAGES
    # the plan shows the shard count the array tasks run with
    syn_plan = json.loads(next(x for x in plan if x.startswith("[plan] synthesize ")).split(" ", 2)[2])
    assert syn_plan["config"]["shards"] == 256
    dry = [x for x in out if x.startswith("[dry-run] ")]
    assert len(dry) == len(jobs) and len(out) == len(plan) + len(dry)
    assert all(j.job_id is None for j in jobs)


def test_dry_run_from_the_command_line(project_root, tmp_path):
    cp = subprocess.run([sys.executable, "launch/pipeline.py", "+exp=jz3_7b", "launcher=slurm",
                         "launcher.dry_run=true", f"run_dir={tmp_path}"],
                        cwd=project_root, capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr[-2000:]
    lines = cp.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["dry_run"] is True and summary["jobs"] == len(PAPER_STAGES) + 1
    for st in PAPER_STAGES:
        assert any(x.startswith(f"[dry-run] {st}") for x in lines), st
        assert any(x.startswith(f"[plan] {st} ") for x in lines), st
    syn = next(x for x in lines if x.startswith("[plan] synthesize "))
    assert json.loads(syn.split(" ", 2)[2])["config"]["shards"] == 256  # pinned to the array
    assert not (tmp_path / "slurm").exists()  # nothing submitted


def test_per_stage_resources_are_typed(tmp_path):
    with pytest.raises(Exception, match="gpus_per_nod"):
        compose(["launcher=slurm", "+launcher.resources.pretrain.gpus_per_nod=3"])
    cfg = compose(["launcher=slurm", "launcher.resources.pretrain.gpus_per_node=4"])
    assert cfg.launcher.for_stage("pretrain").gpus_per_node == 4
    assert cfg.launcher.for_stage("no_such_stage") == cfg.launcher.default


# ------------------------------------------------------------------ real submission (stand-ins)
@dataclasses.dataclass
class First:
    path: str


@dataclasses.dataclass
class MergeInputs:
    first: Optional[First] = None


def _first(ctx: StageContext) -> StageResult:
    (ctx.out / "first.txt").write_text("1\n")
    return StageResult(counts={"out": 1}, result=First(str(ctx.out / "first.txt")))


def _shard(ctx: StageContext) -> None:
    (ctx.out / f"shard-{ctx.shard}-of-{ctx.num_shards}.txt").write_text(f"{ctx.shard}\n")


def _merge(ctx: StageContext) -> StageResult:
    parts = sorted(ctx.out.glob("shard-*.txt"))
    if len(parts) != ctx.num_shards:
        raise RuntimeError(f"missing shards: {[p.name for p in parts]}")
    total = sum(int(p.read_text()) for p in parts)
    (ctx.out / "merged.txt").write_text(f"{total}\n")
    return StageResult(counts={"shards": len(parts), "sum": total})


STANDINS = [
    Stage("first", _first, section="snippets"),
    Stage("synthesize", _merge, MergeInputs, shard_fn=_shard),
]


@pytest.mark.slow
def test_submit_to_a_real_slurm_cluster(slurm_cluster, tmp_path, monkeypatch,  # noqa: F811
                                        project_root):
    for k, v in slurm_cluster.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(project_root)
    run = tmp_path / "run"
    cfg = compose(["launcher=slurm", f"run_dir={run}",
                   f"launcher.partition={slurm_cluster.partition}",
                   "launcher.default.cpus_per_task=1", "launcher.default.mem_gb=0",
                   "launcher.default.timeout_min=5", "launcher.resources.synthesize.array=3",
                   "launcher.resources.synthesize.cpus_per_task=1",
                   "launcher.resources.synthesize.gpus_per_node=0",
                   "launcher.resources.synthesize.mem_gb=0"])
    cfg = pin_shards(cfg, STANDINS)
    assert cfg.stages.synthesize.shards == 3
    jobs = submit_jobs(cfg, plan_jobs(cfg, STANDINS), STANDINS)
    assert [j.kind for j in jobs] == ["stage", "array", "merge"]
    merge_id = jobs[-1].job_id
    states = slurm_cluster.wait(merge_id, timeout=240)
    assert set(states.values()) == {"COMPLETED"}, (states, slurm_cluster.log_tail())
    m = json.loads((run / "synthesize" / "manifest.json").read_text())
    assert m["counts"] == {"shards": 3, "sum": 3}
    plan = read_plan(run)  # written at submission; every job ran what it planned
    assert m["config"] == plan["synthesize"]["config"] and m["config"]["shards"] == 3
    assert (run / "first" / "manifest.json").exists()
    # resubmitting a finished pipeline plans nothing
    assert plan_jobs(cfg, STANDINS) == []
    assert Path(run / "synthesize" / "out" / "merged.txt").read_text() == "3\n"
