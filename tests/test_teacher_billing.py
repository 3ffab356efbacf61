"""The teacher under real failures, against a fault-injecting chat-completions server on
127.0.0.1: each attempt's billing class (never sent / answered / lost), the Idempotency-Key
probe against a server that honours keys and one that ignores them, the circuit breaker, the
stage's failure line, and the temp files a killed run leaves."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from openai_server import ChatServer, FaultPlan  # noqa: E402

from jz3.config.enums import IdempotencyMode, TeacherKind  # noqa: E402
from jz3.config.teacher import BudgetConfig, TeacherConfig  # noqa: E402
from jz3.errors import StageFailed  # noqa: E402
from jz3.teacher.dispatch import TeacherRunner, sampling_params  # noqa: E402
from jz3.teacher.journal import Journal, request_key  # noqa: E402
from jz3.teacher.kd import run_kd  # noqa: E402
from jz3.teacher.openai_client import OpenAIBackend  # noqa: E402
from jz3.teacher.types import OutcomeStatus, TeacherRequest  # noqa: E402

PRICES = dict(price_input_per_1m=10.0, price_output_per_1m=30.0)


def _cfg(url: str, tmp_path: Path, **kw) -> TeacherConfig:
    base = dict(kind=TeacherKind.openai, base_url=url, model="teacher-x", api_key="sk-test",
                concurrency=4, timeout_s=2.0, max_retries=3, backoff_base_s=0.01,
                backoff_max_s=0.05, max_tokens=64, journal=str(tmp_path / "j.sqlite"),
                budget=BudgetConfig(max_calls=1000, max_tokens=10**6, max_cost_usd=10.0,
                                    **PRICES))
    base.update(kw)
    return TeacherConfig(**base)


def _requests(cfg: TeacherConfig, n: int, tag: str = "") -> list:
    params = sampling_params(cfg)
    return [TeacherRequest(request_key(cfg.model, p, params), p, "amc10")
            for p in (f"Write a problem {tag}#{i}" for i in range(n))]


def _run(cfg: TeacherConfig, reqs: list):
    with Journal(cfg.journal) as journal:
        runner = TeacherRunner(OpenAIBackend(cfg), journal, cfg, rng_seed=0)
        outs = runner.run_sync(reqs, progress=False)
        return runner, outs, journal.totals()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _snippets(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "snippets.jsonl"
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"s{i}", "doc_id": f"d{i}", "source": "src",
                                 "text": f"Snippet {i}: a train leaves at {i} pm.",
                                 "prompt_type": "grade_school"}) + "\n")
    return path


def test_never_sent_attempts_book_nothing_and_are_no_calls(tmp_path):
    """A refused connection cannot have been billed: nine attempts against a cap of two
    worst cases ($0.005) leave it untouched."""
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    cfg = _cfg(url, tmp_path, max_retries=2, breaker_fatal_errors=0,
               budget=BudgetConfig(max_cost_usd=0.005, **PRICES))
    runner, outs, totals = _run(cfg, _requests(cfg, 3))
    assert [o.status for o in outs] == [OutcomeStatus.failed] * 3
    assert all(o.reason.startswith("retries_exhausted: 3 attempts, last error connect_failed: "
                                   "ConnectionRefusedError") for o in outs)
    never = runner.report.billing["never_sent"]
    assert never["attempts"] == 9 + 1  # and the probe's one try
    assert never["booked_tokens"] == 0 and never["booked_cost_usd"] == 0
    assert never["billed_cost_usd"] == 0 and runner.report.billing["lost"]["billed_cost_usd"] is None
    assert (totals.calls, totals.tokens, totals.cost, totals.unsent) == (0, 0, 0.0, 10)
    assert runner.budget.spent_calls == 0 and runner.report.budget_exhausted == 0


def test_answered_attempts_book_exactly_what_the_server_bills(tmp_path):
    with ChatServer(FaultPlan(fault_rate=0.3, weights={"rate_limit": 1, "server_error": 1},
                              retry_after_s=0.01, seed=5)) as server:
        cfg = _cfg(f"http://127.0.0.1:{server.port}/v1", tmp_path, max_retries=10)
        runner, outs, totals = _run(cfg, _requests(cfg, 12))
        assert all(o.status == OutcomeStatus.ok for o in outs), [(o.status, o.reason) for o in outs]
        assert runner.report.billing["lost"]["attempts"] == 0
        assert runner.report.billing["answered"]["attempts"] == server.requests  # probe too
        assert totals.tokens == server.billed_tokens  # the probe's two answers included
        assert totals.cost == pytest.approx(server.billed_cost(10.0, 30.0))
        assert totals.calls == server.requests


@pytest.mark.parametrize("honour", [True, False])
def test_lost_attempts_are_given_back_only_where_the_key_is_honoured(tmp_path, honour):
    """Timeouts after send (the server generates and bills anyway) are booked at the worst
    case; the probe tells the servers apart; where keys are honoured the retry gets the paid
    answer replayed and the lost booking is given back, where not it stays: booked >= billed."""
    plan = FaultPlan(fault_rate=0.5, weights={"slow": 1.0}, slow_s=0.5, seed=6,
                     honour_keys=honour)
    with ChatServer(plan) as server:
        cfg = _cfg(f"http://127.0.0.1:{server.port}/v1", tmp_path, timeout_s=0.35,
                   backoff_base_s=0.05, backoff_max_s=0.1, max_retries=8)
        runner, outs, totals = _run(cfg, _requests(cfg, 10, tag=str(honour)))
        rep = runner.report
        assert rep.idempotency == {"mode": "probe", "probe": "honoured" if honour else "ignored",
                                   "honoured": honour}
        assert all(o.status == OutcomeStatus.ok for o in outs), [(o.status, o.reason) for o in outs]
        lost = rep.billing["lost"]
        assert lost["attempts"] >= 2 and rep.errors.get("timeout", 0) == lost["attempts"]
        if honour:
            assert server.replays >= 1 and max(server.answered.values()) == 1
            assert lost["booked_tokens"] == 0 and lost["released_tokens"] > 0
            assert totals.tokens == server.billed_tokens  # each key billed once, booked once
            assert totals.orphaned == 0
        else:
            assert server.replays == 0 and max(server.answered.values()) >= 2
            assert lost["booked_tokens"] >= lost["attempts"] * cfg.max_tokens  # worst case
            assert "released_tokens" not in lost
        assert totals.tokens >= server.billed_tokens
        assert totals.cost + 1e-12 >= server.billed_cost(10.0, 30.0)


def test_a_bad_key_trips_the_breaker_and_the_stage_fails_with_cause_and_url(tmp_path):
    with ChatServer(FaultPlan(api_key="sk-right")) as server:
        url = f"http://127.0.0.1:{server.port}/v1"
        cfg = _cfg(url, tmp_path, api_key="sk-wrong", breaker_fatal_errors=3)
        with pytest.raises(StageFailed) as err:
            run_kd(cfg, _snippets(tmp_path, 20), tmp_path / "kd", [f"s{i}" for i in range(20)],
                   stage="kd_seed")
        assert str(err.value) == (
            f"kd_seed: 0 of 20 requests succeeded: 20 × http_401 'Incorrect API key provided' "
            f"from {url} (stopped after 3 consecutive fatal errors)")
        assert server.unauthorized <= 3 + cfg.concurrency  # it stopped hammering
    rejected = (tmp_path / "kd" / "rejected.jsonl").read_text().splitlines()
    assert len(rejected) == 20


def test_a_refused_endpoint_fails_fast_without_spending(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    cfg = _cfg(url, tmp_path, max_retries=8, backoff_base_s=0.2, backoff_max_s=2.0,
               budget=BudgetConfig(max_cost_usd=1.0, **PRICES))
    t0 = time.time()
    with pytest.raises(StageFailed, match=r"^kd_seed: 0 of 20 requests succeeded: 20 × "
                                          r"connect_failed: ConnectionRefusedError from "
                                          + url.replace(".", r"\.")):
        run_kd(cfg, _snippets(tmp_path, 20), tmp_path / "kd", [f"s{i}" for i in range(20)],
               stage="kd_seed")
    assert time.time() - t0 < 10  # not 20 x 9 attempts of backoff
    with Journal(cfg.journal) as j:
        t = j.totals()
    assert (t.calls, t.cost, t.ok) == (0, 0.0, 0)
    # after the fix, the same journal sends and answers everything
    with ChatServer() as server:
        cfg2 = _cfg(f"http://127.0.0.1:{server.port}/v1", tmp_path,
                    budget=BudgetConfig(max_cost_usd=1.0, **PRICES))
        res = run_kd(cfg2, _snippets(tmp_path, 20), tmp_path / "kd",
                     [f"s{i}" for i in range(20)], stage="kd_seed")
        assert res.written == 20


def test_a_rerun_removes_the_temp_files_a_killed_run_left(tmp_path):
    out = tmp_path / "kd"
    out.mkdir()
    stale = [".kd.jsonl.abc123.tmp", ".rejected.jsonl.x9.tmp", ".requested_ids.json.tmp.4242"]
    for name in stale + [".other.jsonl.zz.tmp", "notes.txt"]:
        (out / name).write_text("")
    with ChatServer() as server:
        cfg = _cfg(f"http://127.0.0.1:{server.port}/v1", tmp_path)
        res = run_kd(cfg, _snippets(tmp_path, 3), out, ["s0", "s1", "s2"], stage="kd_seed")
    assert res.written == 3
    assert sorted(p.name for p in out.iterdir()) == [
        ".other.jsonl.zz.tmp", "kd.jsonl", "notes.txt", "rejected.jsonl", "requested_ids.json"]


def test_trust_and_none_skip_the_probe(tmp_path):
    with ChatServer() as server:
        for mode in (IdempotencyMode.trust, IdempotencyMode.none):
            cfg = _cfg(f"http://127.0.0.1:{server.port}/v1", tmp_path / mode.value,
                       idempotency=mode)
            before = server.requests
            runner, outs, _ = _run(cfg, _requests(cfg, 2, tag=mode.value))
            assert server.requests - before == 2 and all(o.status == OutcomeStatus.ok
                                                         for o in outs)
            assert runner.report.idempotency["honoured"] is (mode == IdempotencyMode.trust)


def _root(**kd):
    from jz3.config.root import JZ3Config

    cfg = JZ3Config()
    for k, v in kd.items():
        setattr(cfg.stages.kd_seed, k, v)
    return cfg


@pytest.mark.parametrize("kd,env,msg", [
    (dict(count=0), {}, r"stages\.kd_seed\.count must be >= 1 for a stage that asks"),
    (dict(teacher=TeacherConfig(kind=TeacherKind.openai)), {"OPENAI_API_KEY": "k"},
     r"stages\.kd_seed\.teacher\.base_url is required for teacher\.kind=openai"),
    (dict(teacher=TeacherConfig(kind=TeacherKind.openai, base_url="localhost:8000")),
     {"OPENAI_API_KEY": "k"}, r"stages\.kd_seed\.teacher\.base_url must start with http"),
    (dict(teacher=TeacherConfig(kind=TeacherKind.openai, base_url="http://h/v1")),
     {"OPENAI_API_KEY": ""}, r"stages\.kd_seed\.teacher\.api_key is not set and the "
                             r"environment variable OPENAI_API_KEY is empty"),
    (dict(teacher=TeacherConfig(kind=TeacherKind.openai, base_url="http://h/v1",
                                budget=BudgetConfig(max_cost_usd=0.0))),
     {"OPENAI_API_KEY": "k"}, r"stages\.kd_seed\.teacher\.budget\.max_cost_usd must be > 0"),
])
def test_selected_stages_are_checked_before_any_runs(monkeypatch, kd, env, msg):
    from jz3.config.validate import ConfigValueError, check_stages

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg = _root(**kd)
    with pytest.raises(ConfigValueError, match=f"^{msg}"):
        check_stages(cfg, ["snippets", "kd_seed"])
    check_stages(cfg, ["snippets"])  # a stage not selected is not checked
    check_stages(_root(count=0, from_file="kd.jsonl"), ["kd_seed"])  # no teacher: no count


@pytest.mark.slow
def test_launch_kd_fails_loudly_and_a_rerun_after_the_fix_retries(tmp_path, project_root):
    """Config errors: one line, exit 2, before the snippets stage. A refused endpoint: non-zero
    exit, the cause and URL on stderr, no manifest; the same command after the server is up
    sends the requests again and succeeds."""
    import os
    import subprocess

    run_dir = tmp_path / "run"
    t = "stages.kd_seed.teacher"
    port = _closed_port()
    cmd = [sys.executable, "launch/kd.py", "+exp=tiny_kd", f"run_dir={run_dir}",
           f"teacher@{t}=openai", f"{t}.base_url=http://127.0.0.1:{port}/v1",
           f"{t}.model=teacher-x", f"{t}.max_tokens=64", f"{t}.backoff_base_s=0.01",
           "stages.snippets.snippets.max_snippets=30", "stages.kd_seed.count=12"]
    env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
    env.pop("HYDRA_FULL_ERROR", None)
    bad = subprocess.run(cmd + ["stages.kd_seed.count=0"], cwd=project_root, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and not (run_dir / "snippets").exists()
    assert bad.stderr.strip().splitlines() == [
        "config error: stages.kd_seed.count must be >= 1 for a stage that asks the teacher, "
        "got 0 (or set stages.kd_seed.from_file to import a KD set)"]

    first = subprocess.run(cmd, cwd=project_root, env=env, capture_output=True, text=True,
                           timeout=120)
    assert first.returncode != 0
    assert (f"kd_seed: 0 of 12 requests succeeded: 12 × connect_failed: ConnectionRefusedError "
            f"from http://127.0.0.1:{port}/v1") in first.stderr
    assert not (run_dir / "kd_seed" / "manifest.json").exists()
    server = ChatServer()
    server.start(port)  # the fix: the endpoint is up
    try:
        second = subprocess.run(cmd, cwd=project_root, env=env, capture_output=True, text=True,
                                timeout=120)
    finally:
        server.stop()
    assert second.returncode == 0, second.stderr[-2000:]
    assert json.loads(second.stdout.strip().splitlines()[-1])["written"] == 12
    assert server.requests >= 12


def test_progress_bar_and_per_request_lines_only_at_debug(tmp_path, capsys, caplog):
    import logging

    with ChatServer() as server:
        cfg = _cfg(f"http://127.0.0.1:{server.port}/v1", tmp_path)
        reqs = _requests(cfg, 6, tag="bar")
        with caplog.at_level(logging.INFO):
            with Journal(cfg.journal) as journal:
                TeacherRunner(OpenAIBackend(cfg), journal, cfg).run_sync(reqs, progress=True)
        err = capsys.readouterr().err
        assert "answered=6 failed=0 booked=$" in err and " billed=$" in err
        info = [r.getMessage() for r in caplog.records]
        assert len(info) == 2 and "probe: honoured" in info[0]  # the probe, the summary:
        assert "6 requests: 6 answered" in info[1]  # no per-request line
        assert not any("HTTP Request" in m for m in info)
        assert logging.getLogger("httpx").level == logging.WARNING
        caplog.clear()
        cfg2 = _cfg(f"http://127.0.0.1:{server.port}/v1", tmp_path / "debug")
        with caplog.at_level(logging.DEBUG, logger="jz3"):
            with Journal(cfg2.journal) as journal:
                TeacherRunner(OpenAIBackend(cfg2), journal, cfg2).run_sync(reqs, progress=False)
        debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG
                 and r.name == "jz3.teacher.dispatch"]
        assert len([m for m in debug if "attempt 1: answered" in m]) == 6
