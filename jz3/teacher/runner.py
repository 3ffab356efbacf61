"""Run many teacher requests: journal first, budget-reserved, concurrent, retried.

For each request: an `ok` journal entry is returned as is (nothing sent, never paid twice);
otherwise, under a concurrency semaphore, each attempt reserves its worst case in the budget
and in the journal, is sent, and is settled to its real usage. Transient errors (429, 5xx,
timeouts, dropped connections, malformed bodies) are retried with exponential backoff and full
jitter, never sooner than the server's Retry-After; permanent errors (4xx) and exhausted
retries are journalled as `failed` with their reason. The semaphore is not held while sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from tqdm import tqdm

from jz3.config.teacher import TeacherConfig
from jz3.teacher.budget import Budget, BudgetExhausted, Prices, prompt_token_bound
from jz3.teacher.journal import Journal, JournalEntry
from jz3.teacher.types import (
    Outcome,
    OutcomeStatus,
    PermanentError,
    TeacherBackend,
    TeacherRequest,
    TransientError,
)

log = logging.getLogger(__name__)


def sampling_params(cfg: TeacherConfig) -> Dict[str, Any]:
    """The sampling params that, with model and prompt, make a request's journal key."""
    return {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_tokens": cfg.max_tokens}


@dataclass
class RunReport:
    requests: int = 0
    cached: int = 0  # answered from the journal
    ok: int = 0
    failed: int = 0
    budget_exhausted: int = 0
    attempts: int = 0  # attempts sent in this run
    retries: int = 0
    errors: Dict[str, int] = field(default_factory=dict)  # attempt error reason -> count

    def add_error(self, reason: str) -> None:
        key = reason.split(":", 1)[0]
        self.errors[key] = self.errors.get(key, 0) + 1


class TeacherRunner:
    def __init__(self, backend: TeacherBackend, journal: Journal, cfg: TeacherConfig,
                 budget: Optional[Budget] = None, rng_seed: Optional[int] = None):
        self.backend, self.journal, self.cfg = backend, journal, cfg
        if budget is None:
            b = cfg.budget
            prices = (Prices(b.price_input_per_1m, b.price_output_per_1m) if backend.billable
                      else Prices(0.0, 0.0))
            t = journal.totals()
            if t.unsettled:
                log.warning("journal %s: %d attempts were in flight when a previous run died; "
                            "their worst case stays charged", journal.path, t.unsettled)
            budget = Budget(b, prices, calls=t.calls, tokens=t.tokens, cost=t.cost)
        self.budget = budget
        self.params = sampling_params(cfg)
        self.report = RunReport()
        self._rng = random.Random(rng_seed)
        self._sem: Optional[asyncio.Semaphore] = None

    def backoff(self, attempt: int, retry_after: Optional[float]) -> float:
        """Full-jitter exponential backoff, and at least the server's Retry-After."""
        cap = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * (2 ** attempt))
        delay = self._rng.uniform(0.0, cap)
        if retry_after is not None:
            delay = max(delay, retry_after * (1.0 + 0.1 * self._rng.random()))
        return delay

    async def run(self, requests: Sequence[TeacherRequest], progress: bool = True) -> List[Outcome]:
        """Outcomes in the order of `requests` (duplicate keys are sent once)."""
        self._sem = asyncio.Semaphore(self.cfg.concurrency)
        self.report.requests += len(requests)
        bar = tqdm(total=len(requests), desc="teacher", unit="req", disable=not progress,
                   mininterval=1.0)
        unique: Dict[str, asyncio.Task] = {}
        known = self.journal.get_many(list(dict.fromkeys(r.key for r in requests)))

        async def one(req: TeacherRequest) -> Outcome:
            out = await self._one(req, known.get(req.key))
            bar.update(1)
            return out

        try:
            for req in requests:
                if req.key not in unique:
                    unique[req.key] = asyncio.ensure_future(one(req))
            done = await asyncio.gather(*unique.values())
        finally:
            bar.close()
            await self.backend.aclose()
        by_key = dict(zip(unique.keys(), done, strict=True))
        return [by_key[r.key] for r in requests]

    async def _one(self, req: TeacherRequest, entry: Optional[JournalEntry]) -> Outcome:
        if entry is not None and (entry.status == "ok" or
                                  (entry.status == "failed" and not self.cfg.retry_failed)):
            self.report.cached += 1
            st = OutcomeStatus.ok if entry.status == "ok" else OutcomeStatus.failed
            self._count(st)
            return Outcome(req.key, st, entry.completion, entry.response_model, entry.usage,
                           entry.finish_reason, entry.reason, 0, cached=True)
        assert self._sem is not None
        b = self.cfg.budget
        p_tokens = prompt_token_bound(req.prompt, b.chars_per_token, b.prompt_overhead_tokens)
        worst = self.budget.worst_case(p_tokens, self.cfg.max_tokens)
        last = "no attempt"
        sent = 0
        for attempt in range(self.cfg.max_retries + 1):
            async with self._sem:
                # Reserve inside the semaphore: reservations never exceed what is in flight.
                try:
                    res = await self.budget.reserve(worst)
                except BudgetExhausted as e:
                    self._count(OutcomeStatus.budget_exhausted)
                    return Outcome(req.key, OutcomeStatus.budget_exhausted, reason=str(e),
                                   attempts=sent)
                self.journal.begin_attempt(req.key, self.backend.name, req.prompt, self.params,
                                           res.tokens, res.cost)
                sent += 1
                self.report.attempts += 1
                try:
                    resp = await self.backend.send(req, self.params, self.cfg.timeout_s)
                except TransientError as e:
                    tokens, cost = self._charge_error(e, res.tokens, res.cost)
                    await self.budget.settle(res, tokens, cost)
                    self.journal.settle_error(req.key, e.reason, tokens, cost)
                    self.report.add_error(e.reason)
                    last, retry_after = e.reason, e.retry_after
                except PermanentError as e:
                    await self.budget.settle(res, 0, 0.0)
                    self.journal.settle_error(req.key, e.reason, 0, 0.0)
                    self.journal.mark_failed(req.key, e.reason)
                    self.report.add_error(e.reason)
                    self._count(OutcomeStatus.failed)
                    return Outcome(req.key, OutcomeStatus.failed, reason=e.reason, attempts=sent)
                except BaseException:
                    # Cancelled or a bug: keep the worst case charged (we cannot know better).
                    await self.budget.settle(res, res.tokens, res.cost)
                    raise
                else:
                    pt = int(resp.usage.get("prompt_tokens") or 0)
                    ct = int(resp.usage.get("completion_tokens") or 0)
                    tokens, cost = (pt + ct, self.budget.prices.cost(pt, ct)) if resp.usage \
                        else (res.tokens, res.cost)
                    await self.budget.settle(res, tokens, cost)
                    model = resp.model or self.backend.name
                    self.journal.settle_ok(req.key, resp.text, model, resp.finish_reason,
                                           resp.usage, tokens, cost)
                    self._count(OutcomeStatus.ok)
                    return Outcome(req.key, OutcomeStatus.ok, resp.text, model, resp.usage,
                                   resp.finish_reason, attempts=sent)
            if attempt < self.cfg.max_retries:
                self.report.retries += 1
                await asyncio.sleep(self.backoff(attempt, retry_after))
        reason = f"retries_exhausted: {sent} attempts, last error {last}"
        self.journal.mark_failed(req.key, reason)
        self._count(OutcomeStatus.failed)
        return Outcome(req.key, OutcomeStatus.failed, reason=reason, attempts=sent)

    def _charge_error(self, e: TransientError, worst_tokens: int, worst_cost: float) -> tuple[int, float]:
        """What a failed attempt is booked at: its usage if reported, worst case if maybe billed."""
        if e.usage:
            pt = int(e.usage.get("prompt_tokens") or 0)
            ct = int(e.usage.get("completion_tokens") or 0)
            return pt + ct, self.budget.prices.cost(pt, ct)
        if e.billed:
            return worst_tokens, worst_cost
        return 0, 0.0

    def _count(self, st: OutcomeStatus) -> None:
        if st == OutcomeStatus.ok:
            self.report.ok += 1
        elif st == OutcomeStatus.failed:
            self.report.failed += 1
        else:
            self.report.budget_exhausted += 1

    def run_sync(self, requests: Sequence[TeacherRequest], progress: bool = True) -> List[Outcome]:
        return asyncio.run(self.run(requests, progress))
