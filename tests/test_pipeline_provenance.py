"""Provenance you can trust: failed stages are never cached, code edits invalidate exactly the
stages that run the edited code (and what follows them), and run folders can be moved."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List, Optional

import pytest

from jz3.config import compose
from jz3.data.snippets import SnippetsResult
from jz3.errors import StageFailed
from jz3.pipeline.runner import (
    Stage,
    StageContext,
    StageResult,
    read_manifest,
    required,
    run_pipeline,
    run_stage,
)
from jz3.provenance.code import code_files


def _cfg(run_dir: Path, *over: str):
    return compose([f"run_dir={run_dir}", *over])


def _statuses(cfg, stages) -> dict:
    return {s.name: s.status for s in run_pipeline(cfg, stages)}


# ---------------------------------------------------------------- failures are not cached
def test_stage_failed_writes_no_manifest_and_the_rerun_retries(tmp_path, caplog):
    def flaky(ctx: StageContext) -> StageResult:
        if not (ctx.run_dir / "fixed").exists():
            raise StageFailed("b: 0 of 3 requests succeeded: 3 × connection_error")
        return StageResult(counts={"out": 3})

    stages = [Stage("b", flaky, section="kd_seed")]
    cfg = _cfg(tmp_path)
    with caplog.at_level(logging.INFO, logger="jz3.pipeline"):
        with pytest.raises(StageFailed, match="0 of 3 requests"):
            run_pipeline(cfg, stages)
    assert not (tmp_path / "b" / "manifest.json").exists()
    assert any("failed (no manifest written" in r.message for r in caplog.records)
    with pytest.raises(StageFailed):  # the same command, nothing fixed: fails again, not cached
        run_pipeline(cfg, stages)
    (tmp_path / "fixed").touch()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="jz3.pipeline"):
        assert _statuses(cfg, stages) == {"b": "ran"}
        assert _statuses(cfg, stages) == {"b": "cached"}
        st = run_stage(_cfg(tmp_path, "pipeline.force=[b]"), stages[0], force=True)
    assert (st.status, st.reason) == ("ran", "forced")
    msgs = [r.getMessage() for r in caplog.records]
    assert any("running (no manifest)" in m for m in msgs)
    assert any("running (forced)" in m for m in msgs)
    assert not any("(cached)" in m and "running" in m for m in msgs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_failed_teacher_run_exits_nonzero_and_the_same_command_retries(tmp_path, project_root):
    """kd_seed against a refused endpoint: exit 1, the cause last, no manifest; the same
    command once the endpoint answers sends the requests again and succeeds."""
    sys.path.insert(0, str(project_root / "tests"))
    from openai_server import ChatServer

    port = _free_port()
    cmd = [sys.executable, "launch/kd.py", "+exp=tiny_kd", f"run_dir={tmp_path / 'run'}",
           "teacher@stages.kd_seed.teacher=openai", "stages.kd_seed.count=4",
           f"stages.kd_seed.teacher.base_url=http://127.0.0.1:{port}/v1",
           "stages.kd_seed.teacher.api_key=test", "stages.kd_seed.teacher.max_retries=0",
           "stages.snippets.snippets.max_snippets=40"]
    env = dict(os.environ, PYTHONPATH=str(project_root))
    cp = subprocess.run(cmd, cwd=project_root, env=env, capture_output=True, text=True,
                        timeout=300)
    assert cp.returncode == 1, cp.stderr[-2000:]
    last = cp.stderr.strip().splitlines()[-1]
    assert last.startswith("kd_seed: 0 of 4 requests succeeded: 4 × connect_failed"), last
    assert f"from http://127.0.0.1:{port}/v1" in last
    assert not (tmp_path / "run" / "kd_seed" / "manifest.json").exists()
    assert (tmp_path / "run" / "snippets" / "manifest.json").exists()

    server = ChatServer()
    server.start(port)
    try:
        cp = subprocess.run(cmd, cwd=project_root, env=env, capture_output=True, text=True,
                            timeout=300)
    finally:
        server.stop()
    assert cp.returncode == 0, cp.stderr[-2000:]
    out = json.loads(cp.stdout.strip().splitlines()[-1])
    assert out["status"] == "ran" and out["written"] == 4
    from jz3.teacher.dispatch import PROBE_PROMPT  # the idempotency probe asks once more

    assert len(set(server.answered) - {PROBE_PROMPT}) == 4
    assert read_manifest(tmp_path / "run" / "kd_seed")["counts"]["out"] == 4


# ---------------------------------------------------------------- code-aware cache key
PKG_FILES = {
    "__init__.py": "",
    "util.py": "def double(x):\n    return 2 * x\n",
    "sa.py": """
        from dataclasses import dataclass
        from typing import Optional

        from jz3.pipeline.runner import StageResult

        @dataclass
        class V:
            v: int

        @dataclass
        class FromA:
            a: Optional[V] = None

        @dataclass
        class FromB:
            b: Optional[V] = None

        def run(ctx):
            (ctx.out / "v").write_text("1")
            return StageResult(result=V(1))
        """,
    "sb.py": """
        from jz3.pipeline.runner import StageResult
        from {pkg}.sa import V

        def run(ctx):
            from {pkg}.util import double

            return StageResult(result=V(double(ctx.inputs.a.v)))
        """,
    "sc.py": """
        from jz3.pipeline.runner import StageResult
        from {pkg}.sa import V

        def helper():
            return 3

        def other():
            return 4

        def run(ctx):
            return StageResult(result=V(ctx.inputs.b.v + helper()))
        """,
}


def _package(tmp_path: Path, name: str):
    import importlib

    root = tmp_path / "src" / name
    root.mkdir(parents=True)
    for f, text in PKG_FILES.items():
        (root / f).write_text(textwrap.dedent(text.replace("{pkg}", name)))
    sys.path.insert(0, str(tmp_path / "src"))
    try:
        mods = [importlib.import_module(f"{name}.{m}") for m in ("sa", "sb", "sc")]
    finally:
        sys.path.remove(str(tmp_path / "src"))
    return root, [Stage("a", mods[0].run, section="snippets"),
                  Stage("b", mods[1].run, mods[0].FromA, section="kd_seed"),
                  Stage("c", mods[2].run, mods[0].FromB, section="distill")]


def test_editing_a_stage_s_code_reruns_it_and_what_follows(tmp_path):
    root, stages = _package(tmp_path, "jz3_test_codekey")
    cfg = _cfg(tmp_path / "run")
    assert _statuses(cfg, stages) == {"a": "ran", "b": "ran", "c": "ran"}
    assert _statuses(cfg, stages) == {"a": "cached", "b": "cached", "c": "cached"}
    # a module only b imports (lazily, inside its function)
    (root / "util.py").write_text("def double(x):\n    return x + x  # same, rewritten\n")
    assert _statuses(cfg, stages) == {"a": "cached", "b": "ran", "c": "ran"}
    # c's own module: a definition c does not use changes nothing, one it uses reruns c (in the
    # stage's own module only the definitions it uses count)
    sc = root / "sc.py"
    sc.write_text(sc.read_text().replace("return 4", "return 5"))
    assert _statuses(cfg, stages) == {"a": "cached", "b": "cached", "c": "cached"}
    sc.write_text(sc.read_text().replace("return 3", "return 30"))
    assert _statuses(cfg, stages) == {"a": "cached", "b": "cached", "c": "ran"}
    # the first stage's module: everything reruns
    sa = root / "sa.py"
    sa.write_text(sa.read_text().replace('write_text("1")', 'write_text(str(1))'))
    assert _statuses(cfg, stages) == {"a": "ran", "b": "ran", "c": "ran"}


def test_real_stages_hash_the_modules_they_run():
    from jz3.pipeline.stages import BY_NAME

    def rel(name: str) -> set:
        return {str(f).split("/jz3/", 1)[1] for f in code_files(BY_NAME[name].functions)}

    kd, ev, snip, pre = rel("kd_seed"), rel("evaluate"), rel("snippets"), rel("pretrain")
    assert "teacher/kd.py" in kd and "train/entry.py" not in kd and "eval/run.py" not in kd
    assert "eval/run.py" in ev and "teacher/kd.py" not in ev
    assert "data/snippets.py" in snip and "teacher/kd.py" not in snip
    assert "train/entry.py" in pre and "teacher/kd.py" not in pre
    assert "synth/run.py" in rel("synthesize")  # the shard function's code too


# ---------------------------------------------------------------- movable run folders
def _produce(ctx: StageContext) -> StageResult:
    f = ctx.out / "s.jsonl"
    f.write_text('{"v": 1}\n')
    return StageResult(counts={"out": 1}, metrics={"file": str(f)},
                       result=SnippetsResult(snippets=str(f), rejected="", count=1))


@dataclasses.dataclass
class SnippetsInput:
    a: Optional[SnippetsResult] = None


def _consume(ctx: StageContext) -> StageResult:
    src = Path(required(ctx.inputs.a, "a").snippets)
    (ctx.out / "copy.jsonl").write_text(src.read_text())
    return StageResult(counts={"src": str(src), "lr": ctx.cfg.trainer.lr})


MOVE_STAGES = [Stage("a", _produce, section="snippets"),
               Stage("b", _consume, SnippetsInput, section="distill")]


def test_a_copied_run_folder_reads_its_own_files(tmp_path):
    ref = tmp_path / "ref"
    assert _statuses(_cfg(ref), MOVE_STAGES) == {"a": "ran", "b": "ran"}
    raw = json.loads((ref / "a" / "manifest.json").read_text())
    assert raw["result"]["snippets"] == "a/out/s.jsonl"  # stored relative to run_dir
    assert raw["metrics"]["file"] == "a/out/s.jsonl"
    assert read_manifest(ref / "a")["result"]["snippets"] == str(ref / "a" / "out" / "s.jsonl")

    moved = tmp_path / "moved"
    shutil.copytree(ref, moved)
    shutil.rmtree(ref)
    # same config but run_dir: every key still matches
    assert _statuses(_cfg(moved), MOVE_STAGES) == {"a": "cached", "b": "cached"}
    (moved / "a" / "out" / "s.jsonl").write_text('{"v": 2}\n')
    assert _statuses(_cfg(moved, "stages.distill.trainer.lr=0.5"), MOVE_STAGES) == {
        "a": "cached", "b": "ran"}
    assert (moved / "b" / "out" / "copy.jsonl").read_text() == '{"v": 2}\n'
    assert read_manifest(moved / "b")["counts"]["src"] == str(moved / "a" / "out" / "s.jsonl")


def test_manifest_has_the_mode_of_the_other_outputs(tmp_path):
    run_pipeline(_cfg(tmp_path), MOVE_STAGES[:1])
    mode = stat.S_IMODE((tmp_path / "a" / "manifest.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "a" / "out" / "s.jsonl").stat().st_mode)
    assert mode & 0o044  # readable by others under the usual umask, not 0600


# ---------------------------------------------------------------- typed results, schema, graph
@dataclasses.dataclass
class PathResult:
    out: Path
    files: List[Path]
    n: int = 0


def _typed(ctx: StageContext) -> StageResult:
    return StageResult(result=PathResult(ctx.out, [ctx.out / "x.jsonl"], 2))


@dataclasses.dataclass
class PathInput:
    a: Optional[PathResult] = None


def _reads_typed(ctx: StageContext) -> StageResult:
    r = ctx.inputs.a
    assert isinstance(r, PathResult) and isinstance(r.files[0], Path) and r.n == 2
    return StageResult(counts={"n": r.n})


TYPED = [Stage("a", _typed, section="snippets"),
         Stage("b", _reads_typed, PathInput, section="distill")]


def test_results_come_back_typed_and_a_mismatch_fails_loudly(tmp_path):
    from jz3.pipeline.runner import PipelineError, StageOutput

    assert _statuses(_cfg(tmp_path), TYPED) == {"a": "ran", "b": "ran"}
    path = tmp_path / "a" / "manifest.json"
    m = json.loads(path.read_text())
    m["result"]["renamed"] = 1  # a field the result type does not have
    path.write_text(json.dumps(m))
    with pytest.raises(TypeError, match=r"unknown fields \['renamed'\]"):
        _ = StageOutput("a", tmp_path / "a", read_manifest(tmp_path / "a")).result
    del m["result"]["renamed"], m["result"]["out"]
    path.write_text(json.dumps(m))
    with pytest.raises(TypeError, match=r"missing fields \['out'\]"):
        _ = StageOutput("a", tmp_path / "a", read_manifest(tmp_path / "a")).result
    # a manifest of another layout: its own stage reruns, a reader of it stops
    m = json.loads(path.read_text())
    m["schema"] = 1
    path.write_text(json.dumps(m))
    with pytest.raises(PipelineError, match="manifest schema 1"):
        run_pipeline(_cfg(tmp_path, "pipeline.stages=[b]", "pipeline.force=[b]"), TYPED)
    # a reruns and writes what it wrote the first time: b, keyed on that, stays cached
    assert _statuses(_cfg(tmp_path), TYPED) == {"a": "ran", "b": "cached"}


def test_slurm_plans_from_the_inputs_the_section_uses(tmp_path):
    from jz3.pipeline.slurm import plan_jobs

    stages = [Stage("a", _produce, section="snippets"),
              Stage("b", _consume, SnippetsInput, section="synthesize",
                    needs=lambda sec: [] if sec.synth.input else ["a"])]
    jobs = plan_jobs(_cfg(tmp_path), stages)
    assert [(j.name, j.after) for j in jobs] == [("a", []), ("b", ["a"])]
    jobs = plan_jobs(_cfg(tmp_path, "stages.synthesize.synth.input=/data/own.jsonl"), stages)
    assert [(j.name, j.after) for j in jobs] == [("a", []), ("b", [])]


def test_an_input_of_the_wrong_result_type_is_an_error(tmp_path):
    from jz3.pipeline.runner import PipelineError

    stages = [TYPED[0], Stage("b", _consume, SnippetsInput, section="distill")]
    with pytest.raises(PipelineError, match="input 'a' is a PathResult, SnippetsInput.a expects "
                                            "SnippetsResult"):
        run_pipeline(_cfg(tmp_path), stages)
    assert not (tmp_path / "b" / "manifest.json").exists()


def test_pack_result_counts_are_typed_and_round_trip(tmp_path, tiny_tokenizer_dir):
    from jz3.config.data import DataConfig, DataSource, TokenizerConfig
    from jz3.config.enums import TokenizerKind
    from jz3.data.pack_stage import PackResult, SourceCounts, run_pack_stage
    from jz3.data.records import IOStats
    from jz3.provenance import jsonable
    from jz3.provenance.manifest import from_jsonable

    src = tmp_path / "s.jsonl"
    src.write_text("".join(json.dumps({"text": f"doc {i} " * 20}) + "\n" for i in range(5)))
    data = DataConfig(tokenizer=TokenizerConfig(kind=TokenizerKind.hf, path=str(tiny_tokenizer_dir)),
                      num_workers=0)
    res = run_pack_stage(data, [DataSource("s", str(src), 1.0)], tmp_path / "out")
    c = res.counts["s"]
    assert isinstance(c, SourceCounts) and c.n_docs == 5 and c.n_tokens > 0
    assert c.records == IOStats(read=5, ok=5)
    raw = json.loads(json.dumps(jsonable(res)))  # as the manifest stores it: pack.json's shape
    assert raw["counts"]["s"]["records"]["reasons"] == {}
    assert from_jsonable(PackResult, raw, "result") == res
