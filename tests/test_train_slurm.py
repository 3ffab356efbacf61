"""launch/slurm/pretrain.sbatch on a real local SLURM cluster (tests/slurm_cluster.py): one node,
two CPU ranks (srun tasks, rendezvous from SLURM variables, ZeRO-3 over gloo); a SIGUSR1 sent
through `scancel --signal=USR1` makes every rank checkpoint and stop (~1-2 min)."""

from __future__ import annotations

import json
import sys
import time

import pytest

from tests.dist_harness import ROOT, _free_port, metric_lines
from tests.slurm_cluster import slurm_cluster  # noqa: F401

pytestmark = pytest.mark.slow

STEPS2 = 60


def overrides(run_dir, tok_dir, steps):
    return ["+exp=tiny_pretrain", "deepspeed@stages.pretrain.deepspeed=zero3", f"run_dir={run_dir}", f"stages.pretrain.data.tokenizer.path={tok_dir}",
            "stages.pretrain.data.seq_len=64", "stages.pretrain.data.num_workers=0", f"stages.pretrain.trainer.max_steps={steps}",
            "stages.pretrain.trainer.global_batch_size=8", "stages.pretrain.trainer.micro_batch_size=2", "stages.pretrain.trainer.save_every=0"]


def submit(cluster, tmp_path, args):
    env = {"JZ3_PYTHON": sys.executable, "JZ3_ROOT": str(ROOT), "WANDB_MODE": "disabled",
           "JZ3_MASTER_PORT": str(_free_port())}
    return cluster.sbatch(["--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1",
                           f"--output={tmp_path}/slurm-%j.out", str(ROOT / "launch/slurm/pretrain.sbatch"),
                           *args], cwd=tmp_path, env=env)


@pytest.fixture
def jobs(slurm_cluster):  # noqa: F811
    """Job ids submitted by the test; cancelled at teardown (stopping the cluster would not stop
    a job's running tasks)."""
    ids: list = []
    yield ids
    for j in ids:
        slurm_cluster.run(["scancel", str(j)], check=False)


def test_two_rank_job_then_usr1_preemption(slurm_cluster, jobs, tmp_path, tiny_tokenizer_dir):  # noqa: F811
    run = tmp_path / "run"
    job = submit(slurm_cluster, tmp_path, overrides(run, tiny_tokenizer_dir, 6))
    jobs.append(job)
    states = slurm_cluster.wait(job, timeout=300)
    log = (tmp_path / f"slurm-{job}.out").read_text()
    assert states == {0: "COMPLETED"}, log[-4000:]
    assert "rank 1/2: process group up (gloo)" in log and "rank 0/2" in log
    res = json.loads((run / "pretrain" / "out" / "train" / "train_result.json").read_text())
    assert res["steps"] == 6 and not res["preempted"]
    ck = run / "pretrain" / "out" / "train" / "checkpoints" / "step-00000006"
    assert len(list(ck.glob("*optim_states.pt"))) == 2  # ZeRO-3 partitions of two ranks
    assert (run / "pretrain" / "out" / "train" / "hf" / "config.json").exists()

    # Preemption: USR1 to every task once training is under way -> checkpoint, clean exit, the
    # batch script requeues the job, the requeued job resumes from the checkpoint and finishes.
    run2 = tmp_path / "run2"
    job2 = submit(slurm_cluster, tmp_path, overrides(run2, tiny_tokenizer_dir, STEPS2))
    jobs.append(job2)
    metrics = run2 / "pretrain" / "out" / "train" / "metrics.jsonl"
    deadline = time.monotonic() + 400
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        assert time.monotonic() < deadline, (tmp_path / f"slurm-{job2}.out").read_text()[-4000:]
        assert slurm_cluster.states(job2).get(0) in ("PENDING", "RUNNING", "CONFIGURING")
        time.sleep(0.5)
    slurm_cluster.scancel(job2, "USR1")
    # SLURM holds a requeued job back for the credential lifetime (CRED_EXPIRE_S in the test
    # cluster) and then starts it again by itself; forcing an earlier start (StartTime=now) makes
    # slurmd refuse it ("Job credential revoked") and the job ends FAILED. Wait for the requeue
    # first: the first execution's end must not be taken for the job's.
    deadline = time.monotonic() + 240
    while slurm_cluster.restarts(job2) < 1:
        assert time.monotonic() < deadline, slurm_cluster.states(job2)
        time.sleep(0.2)
    states = slurm_cluster.wait(job2, timeout=400)
    log2 = (tmp_path / f"slurm-{job2}.out").read_text()
    assert states == {0: "COMPLETED"}, log2[-3000:] + "\n" + slurm_cluster.log_tail(40)
    res2 = json.loads((run2 / "pretrain" / "out" / "train" / "train_result.json").read_text())
    assert res2["steps"] == STEPS2 and not res2["preempted"], log2[-3000:]
    # save_every=0: the only checkpoints are the preemption save and the final one.
    ckpts = sorted(int(p.name.split("-")[1]) for p in (run2 / "pretrain" / "out" / "train" / "checkpoints").glob("step-*"))
    assert len(ckpts) == 2 and 3 <= ckpts[0] < STEPS2 and ckpts[1] == STEPS2, ckpts
    assert "resumed from" in log2 and f"step {ckpts[0]}" in log2
    # Each step logged exactly once: the requeued job went on from the preemption checkpoint.
    assert [r["step"] for r in metric_lines(metrics)] == list(range(1, STEPS2 + 1))
    assert not list(tmp_path.glob(".jz3-preempted-*"))
