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
