"""A SLURM-array synthesis shard on the vLLM engine (CPU, real SmolLM2-135M-Instruct), killed
with SIGKILL mid-way (no engine process outlives it), rerun, resumed from its committed chunks
and merged complete.

Two engine start-ups (~1 min each on 2 cores): the killed task and its rerun."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import List

import pytest

from jz3.data.records import read_records
from jz3.models.gguf_import import SMOLLM2_DIR, is_imported
from jz3.synth.run import IncompleteSynthesis, merge_shards
from jz3.synth.shard_store import ShardStore
from tests.slurm_cluster import slurm_cluster  # noqa: F401
from tests.synth_fixtures import snippets_file  # noqa: F401

SNIPPETS = 8


def _overrides(snippets: Path, run_dir: Path) -> List[str]:
    p = "stages.synthesize.synth"
    return [f"run_dir={run_dir}", "synth@stages.synthesize.synth=tiny", f"{p}.backend=vllm",
            f"{p}.model_path={SMOLLM2_DIR}", f"{p}.input={snippets}", f"{p}.limit={SNIPPETS}",
            "stages.synthesize.shards=1", f"{p}.max_new_tokens=40", f"{p}.max_prompt_tokens=1024",
            f"{p}.flush_every=2"]


def _shard_pids(run_dir: Path) -> List[int]:
    """The shard's python process (its command line names this run's folder), then every
    process below it (vLLM's engine core and worker)."""
    import psutil

    roots = [p for p in psutil.process_iter(["cmdline"])
             if any("launch/synthesize.py" in a for a in p.info["cmdline"] or [])
             and any(str(run_dir) in a for a in p.info["cmdline"] or [])]
    return [q.pid for r in roots for q in [r, *r.children(recursive=True)]]


@pytest.mark.slow
def test_vllm_shard_killed_with_sigkill_resumes(slurm_cluster, project_root,  # noqa: F811
                                                snippets_file, tmp_path):  # noqa: F811
    import psutil

    if not is_imported(SMOLLM2_DIR):
        pytest.fail(f"{SMOLLM2_DIR} is not imported: run `make models`")
    run_dir = tmp_path / "run"
    out = run_dir / "synthesize" / "out"
    script = project_root / "launch" / "slurm" / "synthesize.sbatch"
    env = {"JZ3_ROOT": str(project_root), "JZ3_PYTHON": sys.executable,
           "PYTHONPATH": str(project_root), "OMP_NUM_THREADS": "1"}
    args = _overrides(snippets_file, run_dir)
    sbatch = ["--array=0", "--cpus-per-task=1", f"--output={tmp_path}/slurm-%A_%a.out",
              str(script), *args]
    job = slurm_cluster.sbatch(sbatch, cwd=project_root, env=env)
    store = ShardStore(out, 0, 1)
    deadline = time.monotonic() + 420
    while not store.chunks():
        assert time.monotonic() < deadline, (tmp_path / f"slurm-{job}_0.out").read_text()
        time.sleep(0.2)
    pids = _shard_pids(run_dir)
    assert len(pids) >= 2, pids  # the shard and its engine core
    os.kill(pids[0], signal.SIGKILL)
    states = slurm_cluster.wait(job, timeout=120)
    assert states[0] == "FAILED", (states, (tmp_path / f"slurm-{job}_0.out").read_text())
    deadline = time.monotonic() + 60
    while (alive := [p for p in pids if psutil.pid_exists(p)
                     and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]):
        if time.monotonic() > deadline:
            for p in alive:
                os.kill(p, signal.SIGKILL)
            pytest.fail(f"engine processes outlived the killed shard: {alive}")
        time.sleep(0.5)
    assert store.done_info() is None
    committed = len(store.done_ids())
    assert 2 <= committed < SNIPPETS
    with pytest.raises(IncompleteSynthesis, match=r"\[0\]"):
        merge_shards(out, snippets_file, 1, limit=SNIPPETS)

    rerun = slurm_cluster.sbatch(sbatch, cwd=project_root, env=env)
    log = tmp_path / f"slurm-{rerun}_0.out"
    assert slurm_cluster.wait(rerun, timeout=480) == {0: "COMPLETED"}, log.read_text()
    info = store.done_info()
    assert info["resumed"] == committed and info["generated"] == SNIPPETS - committed
    merged = merge_shards(out, snippets_file, 1, limit=SNIPPETS)
    answered = [r["snippet_id"] for r in read_records(out / "synth.jsonl")]
    answered += [r["snippet_id"] for r in read_records(out / "rejected.jsonl")]
    assert len(answered) == len(set(answered)) == merged.snippets == SNIPPETS
    # real completions from the engine, generated with the shard's sampling settings
    envs = list(store.envelopes())
    assert len(envs) == SNIPPETS and any(e["completion_tokens"] > 0 for e in envs), envs
    assert all(e["completion_tokens"] <= 40 for e in envs)
