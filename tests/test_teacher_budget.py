"""Budget reservations under concurrency, and the journal's durable accounting."""

from __future__ import annotations

import asyncio
import random

import pytest

from jz3.config.teacher import BudgetConfig
from jz3.teacher.budget import Budget, BudgetExhausted, Prices, Reservation, prompt_token_bound
from jz3.teacher.journal import Journal, request_key


def test_reservations_never_exceed_the_limits_with_200_tasks_in_flight():
    cfg = BudgetConfig(max_calls=150, max_tokens=20_000, max_cost_usd=1.0)
    budget = Budget(cfg, Prices(10.0, 30.0))
    rng = random.Random(0)
    peak = {"tokens": 0, "calls": 0, "cost": 0.0}
    refused = 0

    async def task(i: int) -> None:
        nonlocal refused
        worst = budget.worst_case(rng.randint(50, 200), 256)
        try:
            r = await budget.reserve(worst)
        except BudgetExhausted:
            refused += 1
            return
        peak["tokens"] = max(peak["tokens"], budget.spent_tokens + budget.res_tokens)
        peak["calls"] = max(peak["calls"], budget.spent_calls + budget.res_calls)
        peak["cost"] = max(peak["cost"], budget.spent_cost + budget.res_cost)
        await asyncio.sleep(rng.random() * 0.01)
        used = rng.randint(0, r.tokens)
        await budget.settle(r, used, budget.prices.cost(used // 2, used - used // 2))

    async def main() -> None:
        await asyncio.gather(*(task(i) for i in range(200)))

    asyncio.run(main())
    assert refused > 0
    assert peak["tokens"] <= cfg.max_tokens and peak["calls"] <= cfg.max_calls
    assert peak["cost"] <= cfg.max_cost_usd
    assert budget.res_tokens == 0 and budget.res_calls == 0
    assert budget.over_reservation == 0


def test_exhausted_reason_names_the_limit():
    b = Budget(BudgetConfig(max_calls=1), Prices(), calls=1)
    with pytest.raises(BudgetExhausted, match=r"calls 1\+1 > 1"):
        asyncio.run(b.reserve(Reservation(1, 10, 0.0)))


def test_prompt_token_bound_is_an_upper_bound():
    assert prompt_token_bound("héllo wörld", 1.0, 16) == len("héllo wörld".encode()) + 16
    assert prompt_token_bound("abcd" * 10, 4.0, 0) == 10


def test_journal_keeps_worst_case_of_attempts_in_flight_at_a_crash(tmp_path):
    path = tmp_path / "j.sqlite"
    params = {"temperature": 0.7, "top_p": 1.0, "max_tokens": 100}
    k1, k2 = request_key("m", "p1", params), request_key("m", "p2", params)
    assert k1 != request_key("m2", "p1", params) != request_key("m", "p1", {**params, "top_p": 0.9})
    with Journal(path) as j:
        j.begin_attempt(k1, "m", "p1", params, tokens=500, cost=0.5)
        j.settle_error(k1, "http_503", 0, 0.0)
        j.begin_attempt(k1, "m", "p1", params, tokens=500, cost=0.5)
        j.settle_ok(k1, "answer", "m", "stop", {"prompt_tokens": 10, "completion_tokens": 20},
                    30, 0.03)
        j.begin_attempt(k2, "m", "p2", params, tokens=400, cost=0.4)  # then the process dies
    with Journal(path) as j:  # a new process
        t = j.totals()
        assert (t.calls, t.tokens, t.ok, t.pending, t.unsettled) == (3, 430, 1, 1, 1)
        assert t.cost == pytest.approx(0.43)
        e = j.get(k1)
        assert e.status == "ok" and e.completion == "answer" and e.errors == ["http_503"]
        assert e.attempts == 2 and j.get(k2).status == "pending"


def test_reconcile_strict_keeps_worst_case_estimate_books_less_and_releases(tmp_path):
    params = {"temperature": 0.7, "top_p": 1.0, "max_tokens": 100}
    for policy in ("strict", "estimate"):
        path = tmp_path / f"{policy}.sqlite"
        k1, k2 = request_key("m", "p1", params), request_key("m", "p2", params)
        with Journal(path) as j:
            j.begin_attempt(k1, "m", "p1", params, tokens=500, cost=0.5)
            j.settle_ok(k1, "a", "m", "stop", {"prompt_tokens": 10, "completion_tokens": 20},
                        30, 0.03)
            j.begin_attempt(k2, "m", "p2", params, tokens=400, cost=0.4)  # then kill -9
        with Journal(path) as j:
            assert j.totals().unsettled == 1 and j.max_completion_tokens() == 20
            rec = j.reconcile(policy, lambda prompt: (50, 0.05))
            t = j.totals()
            assert (rec.attempts, rec.worst_tokens, t.unsettled, t.orphaned) == (1, 400, 0, 1)
            booked = 400 if policy == "strict" else 50
            assert rec.booked_tokens == booked and t.tokens == 30 + booked
            assert j.get(k2).orphan_tokens == booked
            # the key answered again (idempotently): the dead attempt's booking is released
            j.begin_attempt(k2, "m", "p2", params, tokens=400, cost=0.4)
            released = j.settle_ok(k2, "b", "m", "stop", {"completion_tokens": 5}, 25, 0.025,
                                   release_orphan=True)
            assert released == (booked, pytest.approx(0.4 if policy == "strict" else 0.05))
            t = j.totals()
            assert (t.tokens, t.orphaned, t.ok) == (55, 0, 2)
            assert t.cost == pytest.approx(0.055)


def test_held_reservation_is_released_or_kept():
    b = Budget(BudgetConfig(max_tokens=1000), Prices(), tokens=600)
    b.hold(500, 0.0)  # a dead run's attempt whose key is re-sent now
    assert (b.spent_tokens, b.res_tokens) == (100, 500)
    asyncio.run(b.release(300, 0.0))
    asyncio.run(b.keep(200, 0.0))
    assert (b.spent_tokens, b.res_tokens, b.released_tokens) == (300, 0, 300)


@pytest.mark.parametrize("key,value", [("concurrency", 0), ("max_retries", -1),
                                       ("timeout_s", 0.0), ("max_tokens", 0)])
def test_bad_teacher_settings_name_the_key(tmp_path, key, value):
    from dataclasses import replace

    from jz3.config.teacher import TeacherConfig
    from jz3.teacher.dispatch import TeacherRunner

    class Backend:
        name, billable = "m", False

    cfg = replace(TeacherConfig(), **{key: value})
    with Journal(tmp_path / "j.sqlite") as j, pytest.raises(ValueError, match=f"teacher.{key}"):
        TeacherRunner(Backend(), j, cfg)
    bad_budget = replace(TeacherConfig(), budget=BudgetConfig(max_cost_usd=-1.0))
    with Journal(tmp_path / "j.sqlite") as j, \
            pytest.raises(ValueError, match=r"teacher.budget.max_cost_usd must be >= 0"):
        TeacherRunner(Backend(), j, bad_budget)
