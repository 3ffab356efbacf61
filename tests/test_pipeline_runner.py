"""The stage runner with small stand-in stages: caching, invalidation, kill -9 + resume.

The stand-in stages are real resumable writers (append + fsync per record, truncate a torn
last line on resume) so the kill test exercises the runner's contract, not a mock of it.
Run as a script (`python tests/test_pipeline_runner.py RUN_DIR [overrides...]`) it runs the
stand-in pipeline in a subprocess, which the kill test SIGKILLs mid-stage.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

import pytest

from jz3.config import compose
from jz3.data.snippets import SnippetsResult
from jz3.pipeline.runner import (
    PipelineError,
    Stage,
    StageContext,
    StageResult,
    add_to_plan,
    read_manifest,
    required,
    run_pipeline,
    run_stage,
)

N = 40


def _resumable_write(path: Path, rows: List[dict], delay: float = 0.0) -> int:
    """Append the rows not yet in `path` (drops a torn last line); returns how many it wrote."""
    done = 0
    if path.exists():
        raw = path.read_bytes()
        keep = raw[: raw.rfind(b"\n") + 1]
        if len(keep) != len(raw):
            path.write_bytes(keep)
        done = keep.count(b"\n")
    with open(path, "a", encoding="utf-8") as f:
        for r in rows[done:]:
            f.write(json.dumps(r) + "\n")
            f.flush()
            os.fsync(f.fileno())
            if delay:
                time.sleep(delay)
    with open(path.parent / "writes.log", "a") as f:  # how much work each attempt did
        f.write(f"{len(rows) - done}\n")
    return len(rows) - done


def _read(path: Path) -> List[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@dataclasses.dataclass
class Rows:
    """A stand-in stage's typed result: the JSONL file it wrote."""

    path: str


@dataclasses.dataclass
class FromA:
    a: Optional[Rows] = None


@dataclasses.dataclass
class FromB:
    b: Optional[Rows] = None


def stage_a(ctx: StageContext) -> StageResult:
    seed = ctx.cfg.snippets.seed  # ctx.cfg is the section `stages.snippets`, not the root
    rows = [{"id": f"a{i}", "v": (i * 7 + seed) % 13} for i in range(N)]
    _resumable_write(ctx.out / "a.jsonl", rows)
    return StageResult(counts={"out": N}, outputs=["out/a.jsonl"],
                       result=Rows(str(ctx.out / "a.jsonl")))


def stage_b(ctx: StageContext) -> StageResult:
    t = ctx.cfg.teacher.temperature
    src = _read(Path(required(ctx.inputs.a, "a").path))
    rows = [{"id": r["id"] + "b", "v": r["v"] * t} for r in src]
    delay = float(os.environ.get("JZ3_TEST_STAGE_DELAY", "0"))
    _resumable_write(ctx.out / "b.jsonl", rows, delay=delay)
    return StageResult(counts={"in": len(src), "out": len(rows)}, outputs=["out/b.jsonl"],
                       metrics={"mean_v": sum(r["v"] for r in rows) / len(rows)},
                       result=Rows(str(ctx.out / "b.jsonl")))


def stage_c(ctx: StageContext) -> StageResult:
    lr = ctx.cfg.trainer.lr
    src = _read(Path(required(ctx.inputs.b, "b").path))
    rows = [{"id": r["id"] + "c", "v": r["v"] + lr} for r in src]
    _resumable_write(ctx.out / "c.jsonl", rows)
    return StageResult(counts={"out": len(rows)}, outputs=["out/c.jsonl"],
                       result=Rows(str(ctx.out / "c.jsonl")))


STAGES = [
    Stage("a", stage_a, section="snippets"),
    Stage("b", stage_b, FromA, section="kd_seed"),
    Stage("c", stage_c, FromB, section="distill"),
]


def _cfg(run_dir: Path, *over: str):
    return compose([f"run_dir={run_dir}", *over])


def _statuses(cfg) -> dict:
    return {s.name: s.status for s in run_pipeline(cfg, STAGES)}


def test_rerun_is_cached_and_change_reruns_only_downstream(tmp_path):
    assert _statuses(_cfg(tmp_path)) == {"a": "ran", "b": "ran", "c": "ran"}
    first = (tmp_path / "c" / "out" / "c.jsonl").read_text()
    assert _statuses(_cfg(tmp_path)) == {"a": "cached", "b": "cached", "c": "cached"}
    # settings no stage here receives (other stages' sections, the launcher, the report path)
    # re-run nothing
    assert _statuses(_cfg(tmp_path, "stages.pretrain.trainer.lr=0.7",
                          "stages.kd_boost.teacher.temperature=3", "launcher.dry_run=true",
                          "pipeline.report=x.md")) == {"a": "cached", "b": "cached",
                                                       "c": "cached"}
    # a change in b's section: b and c re-run, a does not
    over = "stages.kd_seed.teacher.temperature=2.0"
    assert _statuses(_cfg(tmp_path, over)) == {"a": "cached", "b": "ran", "c": "ran"}
    second = _read(tmp_path / "c" / "out" / "c.jsonl")
    assert second != [json.loads(x) for x in first.splitlines()]
    lr = _cfg(tmp_path).stages.distill.trainer.lr
    assert second[1]["v"] == pytest.approx(((7 % 13) * 2.0) + lr)
    assert len(second) == N  # the stale outputs were replaced, not appended to
    # a change only c receives re-runs only c
    assert _statuses(_cfg(tmp_path, over, "stages.distill.trainer.lr=0.5")) == {
        "a": "cached", "b": "cached", "c": "ran"}
    # a change of the first stage re-runs everything
    assert _statuses(_cfg(tmp_path, over, "stages.distill.trainer.lr=0.5",
                          "stages.snippets.snippets.seed=3")) == {"a": "ran", "b": "ran", "c": "ran"}
    # forcing one stage re-runs it and what depends on its (unchanged) output only if it changed
    cfg = _cfg(tmp_path, over, "stages.distill.trainer.lr=0.5", "stages.snippets.snippets.seed=3",
               "pipeline.force=[b]")
    assert _statuses(cfg) == {"a": "cached", "b": "ran", "c": "cached"}
    # the manifest records the section the stage ran with and its inputs' hashes
    m = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert m["config"]["trainer"]["lr"] == 0.5 and list(m["inputs"]) == ["b"]


def test_selected_stage_needs_finished_inputs(tmp_path):
    with pytest.raises(PipelineError, match="needs 'a'"):
        run_pipeline(_cfg(tmp_path, "pipeline.stages=[b]"), STAGES)
    with pytest.raises(PipelineError, match="unknown stage 'zz'"):
        run_pipeline(_cfg(tmp_path, "pipeline.stages=[zz]"), STAGES)


@dataclasses.dataclass
class SnippetsInput:
    a: Optional[SnippetsResult] = None


def test_typed_result_and_inputs_the_section_names(tmp_path):
    """A stage whose section names its own input does not need (nor hash) the upstream one;
    downstream stages read an upstream stage's typed result from its manifest."""
    def produce(ctx: StageContext) -> StageResult:
        (ctx.out / "s.jsonl").write_text("{}\n")
        return StageResult(counts={"out": 1}, result=SnippetsResult(
            snippets=str(ctx.out / "s.jsonl"), rejected="", count=1))

    def consume(ctx: StageContext) -> StageResult:
        src = ctx.cfg.synth.input or required(ctx.inputs.a, "a").snippets
        return StageResult(counts={"src": src})

    stages = [Stage("a", produce, section="snippets"),
              Stage("b", consume, SnippetsInput, section="synthesize",
                    needs=lambda sec: [] if sec.synth.input else ["a"])]
    run_pipeline(_cfg(tmp_path), stages)
    m = read_manifest(tmp_path / "b")
    assert m["counts"]["src"] == str(tmp_path / "a" / "out" / "s.jsonl")
    assert list(m["inputs"]) == ["a"]
    cfg = _cfg(tmp_path / "alone", "stages.synthesize.synth.input=/data/own.jsonl",
               "pipeline.stages=[b]")
    run_pipeline(cfg, stages)  # no stage a in this run dir: not needed
    m = json.loads((tmp_path / "alone" / "b" / "manifest.json").read_text())
    assert m["counts"]["src"] == "/data/own.jsonl" and m["inputs"] == {}


def test_failed_stage_leaves_no_manifest(tmp_path):
    def boom(ctx: StageContext) -> StageResult:
        (ctx.out / "partial.jsonl").write_text('{"x": 1}\n')
        raise RuntimeError("stage failed")

    cfg = _cfg(tmp_path)
    run_pipeline(cfg, STAGES[:1])
    failing = Stage("b", boom, FromA, section="kd_seed")
    add_to_plan(cfg, [failing])
    with pytest.raises(RuntimeError, match="stage failed"):
        run_stage(cfg, failing)
    assert not (tmp_path / "b" / "manifest.json").exists()
    assert _statuses(cfg)["b"] == "ran"  # same key: resumed in place and completed


def _spawn(run_dir: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, str(run_dir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigkill_mid_stage_then_rerun_matches_uninterrupted(tmp_path):
    ref = tmp_path / "ref"
    run_pipeline(_cfg(ref), STAGES)

    run = tmp_path / "killed"
    env = dict(os.environ, JZ3_TEST_STAGE_DELAY="0.05")
    p = _spawn(run, env)
    b_out = run / "b" / "out" / "b.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once b has written part of its records
        if b_out.exists() and b_out.read_text().count("\n") >= 10:
            break
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    assert (run / "a" / "manifest.json").exists()
    assert not (run / "b" / "manifest.json").exists()
    partial = b_out.read_text().count("\n")
    assert 10 <= partial < N
    a_done = json.loads((run / "a" / "manifest.json").read_text())["finished_at"]

    p = _spawn(run, dict(os.environ))
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 0, out
    statuses = json.loads(out.strip().splitlines()[-1])
    assert statuses == {"a": "cached", "b": "ran", "c": "ran"}
    assert json.loads((run / "a" / "manifest.json").read_text())["finished_at"] == a_done
    writes = [int(x) for x in (run / "b" / "out" / "writes.log").read_text().split()]
    assert writes == [N - partial]  # the rerun wrote only what was missing (killed one: none)
    for st, f in (("a", "a.jsonl"), ("b", "b.jsonl"), ("c", "c.jsonl")):
        got = (run / st / "out" / f).read_text()
        assert got == (ref / st / "out" / f).read_text()
        ids = [json.loads(x)["id"] for x in got.splitlines()]
        assert len(ids) == len(set(ids)) == N


if __name__ == "__main__":
    cfg = _cfg(Path(sys.argv[1]), *sys.argv[2:])
    print(json.dumps(_statuses(cfg)))


def test_report_tells_disabled_from_unfinished(tmp_path):
    """A stage the experiment turns off is reported as disabled, not as 'not finished'; with sft
    off (the jz3_* recipe: SFT is the tail of pretraining) the report says so."""
    from jz3.pipeline.report import write_report

    names = ["pretrain", "sft", "evaluate"]
    text = write_report(tmp_path, names, tmp_path / "r.md", disabled=["sft"]).read_text()
    assert "tail of the pretraining run" in text
    assert "## Evaluation (pretrained model)" in text
    assert "stage(s) sft have not finished" not in text
    assert "stage(s) evaluate have not finished" in text  # enabled and absent: unfinished
    text = write_report(tmp_path, names, tmp_path / "r2.md").read_text()
    assert "## Evaluation (SFT model)" in text
