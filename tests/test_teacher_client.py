"""The teacher client against a real chat-completions server on 127.0.0.1 that injects faults."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from openai_server import FAULTS, ChatServer, FaultPlan, expected_answer  # noqa: E402

from jz3.config.enums import IdempotencyMode  # noqa: E402
from jz3.config.teacher import BudgetConfig, TeacherConfig  # noqa: E402
from jz3.teacher.dispatch import PROBE_PROMPT, TeacherRunner, sampling_params  # noqa: E402
from jz3.teacher.journal import Journal, request_key  # noqa: E402
from jz3.teacher.openai_client import OpenAIBackend, parse_retry_after  # noqa: E402
from jz3.teacher.types import OutcomeStatus, TeacherRequest  # noqa: E402


def _cfg(url: str, **kw) -> TeacherConfig:
    base = dict(base_url=url, model="teacher-x", concurrency=64, timeout_s=1.0, max_retries=10,
                backoff_base_s=0.02, backoff_max_s=0.2, max_tokens=64)
    base.update(kw)
    return TeacherConfig(**base)


def _requests(cfg: TeacherConfig, n: int, poison_every: int = 0, tag: str = "") -> list:
    out = []
    for i in range(n):
        prompt = f"Write a problem {tag}#{i}" + (" POISON" if poison_every and i % poison_every == 0 else "")
        ptype = "tool" if i % 5 == 0 else "amc10"
        prompt += " ## Code Solution" if ptype == "tool" else ""
        out.append(TeacherRequest(request_key(cfg.model, prompt, sampling_params(cfg)), prompt, ptype))
    return out


@pytest.mark.slow  # 10-35 s on the shared 2-core box
def test_1000_requests_with_30pct_faults_end_answered_once_or_failed_with_reason(tmp_path):
    plan = FaultPlan(fault_rate=0.3, slow_s=1.5, retry_after_s=0.05, seed=1)
    with ChatServer(plan) as server:
        url = f"http://127.0.0.1:{server.port}/v1"
        cfg = _cfg(url, budget=BudgetConfig(max_calls=5000, max_tokens=10_000_000,
                                            max_cost_usd=100.0))
        reqs = _requests(cfg, 1000, poison_every=100)
        poison = {r.key for r in reqs if "POISON" in r.prompt}
        with Journal(tmp_path / "j.sqlite") as journal:
            runner = TeacherRunner(OpenAIBackend(cfg), journal, cfg, rng_seed=0)
            outcomes = runner.run_sync(reqs, progress=False)
            totals = journal.totals()
            failed_entries = {r.key: journal.get(r.key) for r in reqs if r.key in poison}
        stats = server.stats()

        # every request ends answered or failed with a reason; only the poisoned ones fail
        assert len(outcomes) == 1000
        by_status = Counter(o.status for o in outcomes)
        assert by_status == {OutcomeStatus.ok: 990, OutcomeStatus.failed: 10}
        for req, o in zip(reqs, outcomes, strict=True):
            if req.key in poison:
                assert o.status == OutcomeStatus.failed and o.reason.startswith("http_400")
                assert failed_entries[req.key].status == "failed"
            else:
                assert o.status == OutcomeStatus.ok
                assert f"\\boxed{{{expected_answer(req.prompt)}}}" in o.text  # its own answer
        # no prompt answered twice (the server counts delivered 200s), none missing; a 200 can
        # only be re-requested when its attempt timed out or its connection dropped on the
        # client's side, and then the Idempotency-Key makes the server replay, not re-bill
        assert max(server.answered.values()) == 1
        ambiguous = runner.report.errors.get("timeout", 0) + runner.report.errors.get(
            "connection_error", 0)
        assert stats["replays"] <= ambiguous
        assert set(server.answered) - {PROBE_PROMPT} == {r.prompt for r in reqs
                                                          if r.key not in poison}
        # every fault kind was really exercised; Retry-After was honoured
        assert all(stats["faults"].get(f, 0) > 10 for f in FAULTS), stats["faults"]
        assert stats["early_retries"] == 0
        assert runner.report.retries > 250
        # the journal saw every attempt; the budget counted each HTTP request as a call
        assert totals.ok == 990 and totals.failed == 10 and totals.pending == 0
        assert totals.calls == stats["requests"] == runner.budget.spent_calls
        assert totals.tokens >= stats["billed_tokens"]  # worst case for maybe-billed faults
        assert totals.tokens <= cfg.budget.max_tokens

        # a rerun pays nothing for what was answered; only the failed ones are tried again
        before = server.requests
        with Journal(tmp_path / "j.sqlite") as journal:
            rerun = TeacherRunner(OpenAIBackend(cfg), journal, cfg)
            again = rerun.run_sync(reqs, progress=False)
        assert [o.text for o in again] == [o.text for o in outcomes]
        assert rerun.report.attempts == 10  # and the rerun's idempotency probe (>= 2 calls):
        probe_calls = sum(c["attempts"] for c in rerun.report.billing.values()) - 10
        assert probe_calls >= 2 and server.requests - before == 10 + probe_calls
        assert max(n for p, n in server.answered.items() if p != PROBE_PROMPT) == 1


@pytest.mark.parametrize("limit", ["tokens", "cost", "calls"])
def test_budget_is_never_exceeded_with_many_requests_in_flight(tmp_path, limit):
    plan = FaultPlan(fault_rate=0.3, slow_s=1.5, retry_after_s=0.02, seed=2,
                     latency_s=0.01)
    caps = {"tokens": BudgetConfig(max_tokens=5_000),
            "cost": BudgetConfig(max_cost_usd=0.1, price_input_per_1m=10.0,
                                 price_output_per_1m=40.0),
            "calls": BudgetConfig(max_calls=60)}[limit]
    with ChatServer(plan) as server:
        # no idempotency probe: its own retries (30% faults) would blur the rerun's count below
        cfg = _cfg(f"http://127.0.0.1:{server.port}/v1", budget=caps,
                   idempotency=IdempotencyMode.none)
        reqs = _requests(cfg, 300, tag=limit)
        with Journal(tmp_path / "j.sqlite") as journal:
            runner = TeacherRunner(OpenAIBackend(cfg), journal, cfg, rng_seed=0)
            outcomes = runner.run_sync(reqs, progress=False)
            totals = journal.totals()
        st = Counter(o.status for o in outcomes)
        assert st[OutcomeStatus.ok] > 10 and st[OutcomeStatus.budget_exhausted] > 50
        assert all(o.reason.startswith("budget_exhausted: ") for o in outcomes
                   if o.status == OutcomeStatus.budget_exhausted)
        assert server.stats()["max_in_flight"] > 8  # it really was concurrent
        assert totals.tokens <= caps.max_tokens and server.billed_tokens <= caps.max_tokens
        assert totals.cost <= caps.max_cost_usd + 1e-9
        assert totals.calls <= caps.max_calls and server.requests <= caps.max_calls
        assert runner.budget.over_reservation == 0
        # the budget is shared with later runs through the journal: nothing more is sent
        sent = server.requests
        with Journal(tmp_path / "j.sqlite") as journal:
            again = TeacherRunner(OpenAIBackend(cfg), journal, cfg).run_sync(reqs, progress=False)
            assert journal.totals().tokens <= caps.max_tokens
        assert Counter(o.status for o in again)[OutcomeStatus.ok] >= st[OutcomeStatus.ok]
        assert server.requests - sent <= 64


@pytest.mark.parametrize("aiohttp_transport", [True, False])
def test_retries_exhausted_are_recorded_failed_with_the_last_reason(tmp_path, aiohttp_transport):
    plan = FaultPlan(fault_rate=1.0, weights={"server_error": 1.0}, seed=3)
    with ChatServer(plan) as server:
        cfg = _cfg(f"http://127.0.0.1:{server.port}/v1", max_retries=2,
                   aiohttp_transport=aiohttp_transport, idempotency=IdempotencyMode.trust)
        reqs = _requests(cfg, 3, tag="x")
        with Journal(tmp_path / "j.sqlite") as journal:
            outs = TeacherRunner(OpenAIBackend(cfg), journal, cfg).run_sync(reqs, progress=False)
            entry = journal.get(reqs[0].key)
        assert all(o.status == OutcomeStatus.failed for o in outs)
        assert outs[0].reason.startswith("retries_exhausted: 3 attempts, last error http_50")
        assert entry.status == "failed" and entry.attempts == 3 and len(entry.errors) == 3
        assert server.requests == 9 and not server.answered


def test_retry_after_header_forms():
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert 0 <= parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) < 1
    assert parse_retry_after({}) is None


def test_backend_rejects_a_missing_base_url():
    with pytest.raises(ValueError, match="base_url"):
        OpenAIBackend(TeacherConfig(base_url=None))
    assert asyncio.iscoroutinefunction(OpenAIBackend.send)
