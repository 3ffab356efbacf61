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

N = 240


def _answered(journal: Path) -> int:
    if not journal.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM calls WHERE status='ok'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_kill_9_mid_run_and_rerun_complete_the_set(tmp_path, project_root):
    plan = FaultPlan(fault_rate=0.3, slow_s=1.5, latency_s=0.05, retry_after_s=0.05, seed=4)
    with ChatServer(plan) as server:
        run_dir = tmp_path / "run"
        journal = run_dir / "teacher_journal.sqlite"
        cmd = [sys.executable, "launch/kd.py", "+exp=tiny_kd", f"run_dir={run_dir}",
               "teacher=openai", f"teacher.base_url=http://127.0.0.1:{server.port}/v1",
               "teacher.model=teacher-x", "teacher.concurrency=8", "teacher.timeout_s=1.0",
               "teacher.backoff_base_s=0.02", "teacher.backoff_max_s=0.2",
               "teacher.max_tokens=64", f"snippets.max_snippets={N}", f"teacher.num_seed={N}"]
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
        assert not (run_dir / "kd_seed" / "kd.jsonl").exists()  # atomic: nothing half-written

        second = subprocess.run(cmd, cwd=project_root, env=env, capture_output=True, text=True,
                                timeout=240)
        assert second.returncode == 0, second.stderr[-3000:]
        summary = json.loads(second.stdout.strip().splitlines()[-1])
        assert summary["written"] == N and summary["rejected"] == 0

    snippets = [json.loads(line) for line in open(run_dir / "snippets" / "snippets.jsonl")]
    records = [json.loads(line) for line in open(run_dir / "kd_seed" / "kd.jsonl")]
    # no gap, no duplicate, in snippet order, each with the answer to its own prompt
    assert [r["snippet_id"] for r in records] == [s["id"] for s in snippets]
    assert len({r["id"] for r in records}) == N
    for r in records:
        assert r["answer"] == str(expected_answer(r["prompt"]))
        assert r["model"] == "teacher-x" and r["usage"]["completion_tokens"] > 0
    # the server generated (and billed) each prompt once; requests that were in flight at the
    # kill, or timed out client-side, were replayed from their Idempotency-Key, never re-billed
    assert max(server.answered.values()) == 1
    assert set(server.answered) == {r["prompt"] for r in records}
    with sqlite3.connect(journal) as db:
        errors = [e for (row,) in db.execute("SELECT errors FROM calls") for e in json.loads(row)]
        calls, pending = db.execute(
            "SELECT SUM(attempts), SUM(status != 'ok') FROM calls").fetchone()
    ambiguous = sum(e.startswith(("timeout", "connection_error")) for e in errors)
    assert server.replays <= 8 + ambiguous
    assert pending == 0
    assert calls >= server.requests  # attempts in flight at the kill stay charged
    manifest = json.loads((run_dir / "kd_seed" / "manifest.json").read_text())
    assert manifest["counts"] == {"in": N, "out": N, "rejected": 0}
    assert 0 < manifest["teacher"]["usage"]["cached"] < N  # the rerun reused the journal
