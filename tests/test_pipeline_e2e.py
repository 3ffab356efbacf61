"""The whole recipe end to end on the reduced config (hydra_configs/exp/tiny_pipeline.yaml).

One uninterrupted run is the reference. A second run is SIGKILLed in the middle of the
synthesizer's distillation (after its first checkpoint) and re-run: it must finish without
redoing finished stages and produce the same records, predictions and losses as the reference.
Then one stage's config section is changed and exactly that stage and the stages downstream of
it re-run; a setting no stage receives re-runs nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict

import pytest

from jz3.pipeline.stages import STAGE_NAMES

pytestmark = pytest.mark.slow
EXP = "+exp=tiny_pipeline"


def _cmd(run_dir: Path, *over: str):
    return [sys.executable, "launch/pipeline.py", EXP, f"run_dir={run_dir}", *over]


def _run(project_root: Path, run_dir: Path, *over: str) -> Dict:
    cp = subprocess.run(_cmd(run_dir, *over), cwd=project_root, capture_output=True, text=True,
                        timeout=1800)
    log = run_dir.parent / f"pipeline-{len(list(run_dir.parent.glob('pipeline-*.log')))}.log"
    log.write_text(cp.stdout + "\n----- stderr\n" + cp.stderr)
    errors = [x for x in cp.stderr.splitlines() if "Error" in x or "error" in x]
    assert cp.returncode == 0, (str(log), errors[-10:], cp.stderr[-3000:])
    return json.loads(cp.stdout.strip().splitlines()[-1])


def _manifest(run_dir: Path, stage: str) -> Dict:
    return json.loads((run_dir / stage / "manifest.json").read_text())


# files whose content must not depend on interruptions (all in run-dir-independent form)
RECORD_FILES = ["snippets/out/snippets.jsonl", "kd_seed/out/kd.jsonl", "kd_boost/out/kd.jsonl",
                "influence/out/selected_snippets.json", "synthesize/out/synth.jsonl",
                "synthesize/out/rejected.jsonl", "filter/out/cot/part-00000-of-00001.jsonl",
                "evaluate/out/predictions/gsm8k.cot.jsonl",
                "evaluate/out/predictions/math-oai.tool.jsonl"]


@pytest.fixture(scope="module")
def ref_run(project_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("ref") / "run"
    summary = _run(project_root, run)
    return run, summary


def test_end_to_end_writes_every_stage_and_the_report(ref_run):
    run, summary = ref_run
    assert summary["stages"] == {s: "ran" for s in STAGE_NAMES}
    plan = (run / "plan.txt").read_text().splitlines()  # written when the run started
    assert [x.split(" ")[1] for x in plan] == STAGE_NAMES
    for s, line in zip(STAGE_NAMES, plan, strict=True):
        m = _manifest(run, s)
        assert m["stage"] == s and m["config_hash"]
        planned = json.loads(line.split(" ", 2)[2])
        assert planned["config"] == m["config"]  # ran what it planned
        assert planned["inputs"] == list(m["inputs"])  # with the inputs it planned
    # the derived values are in the plan, resolved before any stage ran, and ran as planned
    plan = {x.split(" ")[1]: json.loads(x.split(" ", 2)[2])["config"] for x in plan}
    export = os.path.join(os.path.abspath(run), "distill", "out", "train", "hf")
    assert _manifest(run, "distill")["result"]["hf_export_dir"] == "distill/out/train/hf"
    assert plan["influence"]["synth"]["model_path"] == plan["influence"]["model"]["path"] == export
    steps = _manifest(run, "pretrain")["result"]["steps"]
    assert plan["pretrain_raw"]["trainer"]["max_steps"] == steps == 6
    assert _manifest(run, "pretrain_raw")["result"]["steps"] == steps
    assert plan["synthesize"]["shards"] == _manifest(run, "synthesize")["config"]["shards"] == 1
    assert _manifest(run, "synthesize")["counts"]["out"] >= 1  # the synthesizer wrote parseable text
    assert _manifest(run, "filter")["counts"]["out"] >= 1
    kept = [json.loads(x) for x in (run / RECORD_FILES[6]).read_text().splitlines()]
    assert all(r["input"].startswith("## Question") for r in kept)
    ab = _manifest(run, "ablation")["metrics"]["ablation"]
    assert ab["pretrain"]["tokens"] == ab["pretrain_raw"]["tokens"] > 0  # same token budget
    for model in ("pretrain", "pretrain_raw"):
        assert set(ab[model]["loss"]) == {"gsm8k", "math-oai"}
    ev = _manifest(run, "evaluate")["metrics"]["eval"]
    assert set(ev) == {"gsm8k", "math-oai"} and set(ev["gsm8k"]) == {"cot", "tool"}
    report = (run / "report.md").read_text()
    for section in ("Teacher calls", "Synthesizer training loss", "Influence scores",
                    "Synthesis, filtering", "Pretraining loss", "Evaluation", "Ablation"):
        assert section in report, section
    pngs = {p.name for p in (run / "report_plots").glob("*.png")}
    assert {"kd_size.png", "teacher_calls.png", "synth_loss.png", "influence_scores.png",
            "pretrain_loss.png"} <= pngs
    assert "not finished" not in report
    # a second run is fully cached
    again = _run(Path(__file__).resolve().parents[1], run)
    assert again["stages"] == {s: "cached" for s in STAGE_NAMES}


@pytest.fixture(scope="module")
def killed_run(project_root, tmp_path_factory, ref_run):
    run = tmp_path_factory.mktemp("killed") / "run"
    p = subprocess.Popen(_cmd(run), cwd=project_root, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    ckpts = run / "distill" / "out" / "train" / "checkpoints"
    deadline = time.time() + 600
    while time.time() < deadline and p.poll() is None:
        if ckpts.exists() and any(ckpts.glob("step-*")):
            break
        time.sleep(0.2)
    assert p.poll() is None, "pipeline ended before it could be killed"
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(timeout=60)
    assert not (run / "distill" / "manifest.json").exists()
    before = {s: _manifest(run, s)["finished_at"] for s in ("snippets", "kd_seed")}
    summary = _run(project_root, run)
    return run, summary, before


def test_sigkill_mid_stage_then_rerun_gives_identical_outputs(ref_run, killed_run):
    ref, _ = ref_run
    run, summary, before = killed_run
    assert summary["stages"]["snippets"] == summary["stages"]["kd_seed"] == "cached"
    assert all(summary["stages"][s] == "ran" for s in STAGE_NAMES[2:])
    for s, t in before.items():
        assert _manifest(run, s)["finished_at"] == t  # not redone
    for rel in RECORD_FILES:
        got, want = (run / rel).read_text(), (ref / rel).read_text()
        assert got == want, rel
        if rel.endswith(".jsonl"):
            recs = [json.loads(x) for x in got.splitlines()]
            ids = [r.get("id") or r.get("snippet_id") or r.get("idx") for r in recs]
            assert len(ids) == len(set(ids)), f"duplicates in {rel}"
    ab_ref = _manifest(ref, "ablation")["metrics"]["ablation"]
    ab = _manifest(run, "ablation")["metrics"]["ablation"]
    for model in ("pretrain", "pretrain_raw"):
        for b, v in ab_ref[model]["loss"].items():
            assert ab[model]["loss"][b]["loss_per_token"] == pytest.approx(
                v["loss_per_token"], rel=1e-5)


def test_changing_one_stage_reruns_it_and_only_what_follows(killed_run, project_root):
    run, _, _ = killed_run
    before = {s: _manifest(run, s)["finished_at"] for s in STAGE_NAMES}
    # settings no stage receives (the report path, the SLURM partition) re-run nothing
    summary = _run(project_root, run, "pipeline.report=${run_dir}/report2.md",
                   "launcher.partition=elsewhere")
    assert summary["stages"] == {s: "cached" for s in STAGE_NAMES}
    summary = _run(project_root, run, "stages.filter.filter.min_problem_chars=11")
    # pretrain_raw reads pretrain's step count (match_pretrain_steps)
    downstream = {"filter", "pack", "pretrain", "pretrain_raw", "sft", "evaluate", "ablation"}
    assert summary["stages"] == {s: ("ran" if s in downstream else "cached") for s in STAGE_NAMES}
    for s in set(STAGE_NAMES) - downstream:  # upstream stages kept
        assert _manifest(run, s)["finished_at"] == before[s]
