"""Synthesis as a real SLURM job array on a local cluster: kill a task, rerun it, merge."""

from __future__ import annotations

import time

import pytest

from jz3.data.records import read_records
from jz3.synth.run import IncompleteSynthesis, merge_shards
from jz3.synth.shard_store import ShardStore
from tests.slurm_cluster import slurm_cluster  # noqa: F401
from tests.synth_fixtures import snippets_file, tiny_synthesizer  # noqa: F401

NUM_SHARDS = 4


def _overrides(model, snippets, run_dir):
    p = "stages.synthesize.synth"
    return [f"run_dir={run_dir}", "synth@stages.synthesize.synth=tiny", f"{p}.model_path={model}",
            f"{p}.input={snippets}", f"stages.synthesize.shards={NUM_SHARDS}",
            f"{p}.max_new_tokens=48", f"{p}.batch_size=1", f"{p}.flush_every=1"]


def _wait_for_chunk(store: ShardStore, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not store.chunks():
        if time.monotonic() > deadline:
            raise AssertionError(f"no chunk committed in {store.dir} after {timeout}s")
        time.sleep(0.1)


@pytest.mark.slow
def test_array_killed_task_rerun_merge_complete(slurm_cluster, project_root,  # noqa: F811
                                                tiny_synthesizer, snippets_file, tmp_path):  # noqa: F811
    run_dir = tmp_path / "run"
    out = run_dir / "synthesize" / "out"  # the synthesize stage's folder, shards inside
    script = project_root / "launch" / "slurm" / "synthesize.sbatch"
    args = _overrides(tiny_synthesizer, snippets_file, run_dir)
    env = {"JZ3_ROOT": str(project_root), "OMP_NUM_THREADS": "1"}
    job = slurm_cluster.sbatch([f"--array=0-{NUM_SHARDS - 1}", "--cpus-per-task=1",
                                f"--output={tmp_path}/slurm-%A_%a.out", str(script), *args],
                               cwd=project_root, env=env)
    victim = ShardStore(out, 1, NUM_SHARDS)
    _wait_for_chunk(victim, timeout=240)
    slurm_cluster.scancel(f"{job}_1")  # the task dies mid-way through its shard
    states = slurm_cluster.wait(job, timeout=300)
    logs = {t: (tmp_path / f"slurm-{job}_{t}.out").read_text() for t in states}
    assert set(states) == set(range(NUM_SHARDS))
    assert states[1] == "CANCELLED", logs[1]
    assert all(states[t] == "COMPLETED" for t in (0, 2, 3)), (states, logs)
    assert victim.done_info() is None and victim.chunks()
    committed = len(victim.done_ids())
    with pytest.raises(IncompleteSynthesis, match=r"\[1\]"):
        merge_shards(out, snippets_file, NUM_SHARDS)

    rerun = slurm_cluster.sbatch(["--array=1", "--cpus-per-task=1",
                                  f"--output={tmp_path}/slurm-%A_%a.out", str(script), *args],
                                 cwd=project_root, env=env)
    st = slurm_cluster.wait(rerun, timeout=300)
    assert st == {1: "COMPLETED"}, (tmp_path / f"slurm-{rerun}_1.out").read_text()
    info = victim.done_info()
    assert info["resumed"] == committed >= 1 and info["generated"] == info["assigned"] - committed

    merged = merge_shards(out, snippets_file, NUM_SHARDS)
    snippet_ids = sorted(s["id"] for s in read_records(snippets_file))
    answered = [r["snippet_id"] for r in read_records(out / "synth.jsonl")]
    answered += [r["snippet_id"] for r in read_records(out / "rejected.jsonl")]
    assert sorted(answered) == snippet_ids  # complete: no gap, no duplicate
    assert merged.snippets == len(snippet_ids) == merged.ok + merged.failed
    assert merged.stats["duplicate_answers_dropped"] == 0
