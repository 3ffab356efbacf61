"""kill -9 of a real `launch/kd.py` run mid-way, then a rerun: no duplicate, no gap."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from openai_server import ChatServer, FaultPlan, expected_answer  # noqa: E402

from jz3.teacher.dispatch import PROBE_PROMPT  # noqa: E402

N = 240


def _count(journal: Path, where: str) -> int:
    """Journal rows matching `where`, read-only (0 while the journal is not there yet)."""
    if not journal.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5) as db:
            return db.execute(f"SELECT COUNT(*) FROM calls WHERE {where}").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _generated(server: ChatServer) -> dict:
    """Prompt -> completions the server generated for it (the runs' idempotency probes
    left out)."""
    return {p: n for p, n in server.answered.items() if p != PROBE_PROMPT}


def _answered(journal: Path) -> int:
    return _count(journal, "status='ok'")


def _in_flight(journal: Path) -> int:
    """Attempts booked at their worst case and not settled (sent, not yet answered)."""
    return _count(journal, "pending_tokens > 0")


@pytest.mark.slow
def test_kill_9_mid_run_and_rerun_complete_the_set(tmp_path, project_root):
    plan = FaultPlan(fault_rate=0.3, slow_s=1.5, latency_s=0.05, retry_after_s=0.05, seed=4)
    with ChatServer(plan) as server:
        run_dir = tmp_path / "run"
        journal = run_dir / "teacher_journal.sqlite"
        t = "stages.kd_seed.teacher"
        cmd = [sys.executable, "launch/kd.py", "+exp=tiny_kd", f"run_dir={run_dir}",
               f"teacher@{t}=openai", f"{t}.base_url=http://127.0.0.1:{server.port}/v1",
               f"{t}.model=teacher-x", f"{t}.concurrency=8", f"{t}.timeout_s=1.0",
               f"{t}.backoff_base_s=0.02", f"{t}.backoff_max_s=0.2", f"{t}.max_tokens=64",
               f"stages.snippets.snippets.max_snippets={N}", f"stages.kd_seed.count={N}"]
        env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
        first = subprocess.Popen(cmd, cwd=project_root, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while _answered(journal) < N // 4 and first.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        killed_at = _answered(journal)
        assert first.returncode == -signal.SIGKILL
        assert N // 4 <= killed_at < N, "the kill must land mid-run"
        assert not (run_dir / "kd_seed" / "out" / "kd.jsonl").exists()  # atomic

        second = subprocess.run(cmd, cwd=project_root, env=env, capture_output=True, text=True,
                                timeout=240)
        assert second.returncode == 0, second.stderr[-3000:]
        summary = json.loads(second.stdout.strip().splitlines()[-1])
        assert summary["written"] == N and summary["rejected"] == 0

    # the killed run's temp files are gone (the rerun removed them)
    assert not [p.name for p in (run_dir / "kd_seed" / "out").iterdir() if ".tmp" in p.name]
    snippets = [json.loads(line) for line in open(run_dir / "snippets" / "out" / "snippets.jsonl")]
    records = [json.loads(line) for line in open(run_dir / "kd_seed" / "out" / "kd.jsonl")]
    # no gap, no duplicate, in snippet order, each with the answer to its own prompt
    assert [r["snippet_id"] for r in records] == [s["id"] for s in snippets]
    assert len({r["id"] for r in records}) == N
    for r in records:
        assert r["answer"] == str(expected_answer(r["prompt"]))
        assert r["model"] == "teacher-x" and r["usage"]["completion_tokens"] > 0
    # the server generated (and billed) each prompt once; requests that were in flight at the
    # kill, or timed out client-side, were replayed from their Idempotency-Key, never re-billed
    generated = _generated(server)
    assert max(generated.values()) == 1
    assert set(generated) == {r["prompt"] for r in records}
    with sqlite3.connect(journal) as db:
        errors = [e for (row,) in db.execute("SELECT errors FROM calls") for e in json.loads(row)]
        calls, pending = db.execute(
            "SELECT SUM(attempts), SUM(status NOT IN ('ok', 'probe')) FROM calls").fetchone()
    ambiguous = sum(e.startswith(("timeout", "connection_error")) for e in errors)
    assert server.replays <= 8 + ambiguous
    assert pending == 0
    assert calls >= server.requests  # attempts in flight at the kill stay charged
    manifest = json.loads((run_dir / "kd_seed" / "manifest.json").read_text())
    assert manifest["counts"] == {"in": N, "out": N, "rejected": 0}
    usage = manifest["result"]["stats"]["usage"]
    assert 0 < usage["cached"] < N  # the rerun reused the journal
    # the kill's in-flight attempts were reconciled (teacher.reconcile=estimate: the probe said
    # keys are honoured); the keys whose lost attempts (in flight at the kill, or timed out
    # before it) were answered now had those bookings given back
    rec = usage["reconcile"]
    assert rec["policy"] == "estimate" and rec["attempts"] >= 1
    assert rec["booked_tokens"] <= rec["worst_tokens"]
    assert 1 <= rec["released"] <= rec["orphaned_before"] + rec["attempts"]
    assert usage["idempotency"] == {"mode": "probe", "probe": "honoured", "honoured": True}


_DRIVER = r"""
import dataclasses, json, sys
from jz3.config.enums import ReconcilePolicy, TeacherKind
from jz3.config.teacher import BudgetConfig, TeacherConfig
from jz3.teacher.journal import Journal, request_key
from jz3.teacher.openai_client import OpenAIBackend
from jz3.teacher.dispatch import TeacherRunner, sampling_params
from jz3.teacher.types import TeacherRequest

base_url, journal, policy, n, budget_tokens = sys.argv[1:6]
cfg = TeacherConfig(kind=TeacherKind.openai, base_url=base_url, model="teacher-x",
                    api_key="sk-test", concurrency=8, timeout_s=20.0, max_tokens=64,
                    backoff_base_s=0.02, backoff_max_s=0.2, reconcile=ReconcilePolicy(policy),
                    budget=BudgetConfig(max_calls=10**6, max_tokens=int(budget_tokens),
                                        max_cost_usd=1e9))
params = sampling_params(cfg)
prompts = [f"Problem {i}: " + " ".join(f"w{j}" for j in range(300)) for i in range(int(n))]
reqs = [TeacherRequest(request_key(cfg.model, p, params), p, "cot") for p in prompts]
with Journal(journal) as j:
    runner = TeacherRunner(OpenAIBackend(cfg), j, cfg)
    outs = runner.run_sync(reqs, progress=False)
    print(json.dumps({"ok": sum(o.status.value == "ok" for o in outs),
                      "report": dataclasses.asdict(runner.report),
                      "budget": runner.budget.report(),
                      "journal": dataclasses.asdict(j.totals())}))
"""
N_BUDGET = 120
BUDGET_TOKENS = 25_000  # ~70 answers at ~325 real tokens each; worst case ~1,570 a request


def _drive(project_root: Path, url: str, journal: Path, policy: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _DRIVER, url, str(journal), policy,
                          str(N_BUDGET), str(BUDGET_TOKENS)], cwd=project_root,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _kill_mid_run(project_root: Path, url: str, journal: Path, policy: str) -> int:
    proc = subprocess.Popen([sys.executable, "-c", _DRIVER, url, str(journal), policy,
                             str(N_BUDGET), str(BUDGET_TOKENS)], cwd=project_root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    # kill once 20 are answered and >= 4 attempts are booked in flight (a loaded host can
    # catch the client between requests: wait for the moment rather than hope for it)
    while ((_answered(journal) < 20 or _in_flight(journal) < 4) and proc.poll() is None
           and time.time() < deadline):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "the kill must land mid-run"
    return _in_flight(journal)


@pytest.mark.slow
def test_budget_after_a_kill_never_overbilled_and_no_paid_answer_lost(tmp_path, project_root):
    """kill -9 with a small budget, then a rerun, against a server that honours
    `Idempotency-Key` and one that ignores it. The server bills what it generated, also for a
    client that is gone. Honoured (the probe says so): under `strict` as under `estimate` the
    dead run's in-flight attempts are re-sent under their key, replayed, and their booking is
    given back, so the yield is an uninterrupted run's; ignored: they stay booked at their worst
    case (`estimate` falls back to `strict`). Either way the server never bills past the cap."""
    plan = FaultPlan(latency_s=0.3)
    with ChatServer(plan) as server:
        clean = _drive(project_root, f"http://127.0.0.1:{server.port}/v1",
                       tmp_path / "clean.sqlite", "strict")
        billed_clean = server.billed_tokens
    assert billed_clean <= BUDGET_TOKENS and 40 <= clean["ok"] < N_BUDGET, clean
    assert clean["report"]["idempotency"]["probe"] == "honoured"

    rows = []
    for honour, policy in ((True, "strict"), (True, "estimate"), (False, "estimate")):
        with ChatServer(FaultPlan(latency_s=0.3, honour_keys=honour)) as server:
            url = f"http://127.0.0.1:{server.port}/v1"
            journal = tmp_path / f"{honour}-{policy}.sqlite"
            in_flight = _kill_mid_run(project_root, url, journal, policy)
            assert in_flight >= 4  # the kill left attempts booked at their worst case
            rerun = _drive(project_root, url, journal, policy)
            time.sleep(0.4)  # generations of the killed run's last attempts are billed
            billed = server.billed_tokens
        rec = rerun["report"]["reconcile"]
        ok = _answered(journal)
        rows.append({"honour": honour, "policy": policy, "ok": ok, "clean_ok": clean["ok"],
                     "billed": billed, "booked": rerun["journal"]["tokens"], "rec": rec})
        assert billed <= BUDGET_TOKENS, rows[-1]  # the cap holds on the server's side
        assert rerun["journal"]["tokens"] >= billed, rows[-1]  # booked covers billed
        assert rec["attempts"] == in_flight and rerun["journal"]["unsettled"] == 0
        assert rerun["report"]["idempotency"]["honoured"] is honour
        if honour:
            assert max(_generated(server).values()) == 1  # no prompt generated twice
            assert rec["policy"] == policy and rec["released"] >= 1
            assert ok >= clean["ok"] - 3, rows[-1]  # no answer the server billed is lost
        else:
            assert rec["policy"] == "strict" and rec["configured"] == "estimate"
            assert rec["booked_tokens"] == rec["worst_tokens"] and rec["released"] == 0
            assert ok < clean["ok"], rows[-1]
    print(json.dumps(rows))
