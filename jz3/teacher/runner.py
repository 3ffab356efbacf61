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

from jz3.config.enums import ReconcilePolicy
from jz3.config.teacher import TeacherConfig
from jz3.config.validate import check
from jz3.teacher.budget import Budget, BudgetExhausted, Prices, Reservation, prompt_token_bound
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


def validate(cfg: TeacherConfig, prefix: str = "teacher") -> None:
    """Range checks on the teacher's counts, limits and rates (jz3.config.validate); the error
    names the key under `prefix`."""
    check(cfg, prefix)


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
    # attempts a killed run left in flight: policy, how many, worst case vs booked, released
    reconcile: Dict[str, Any] = field(default_factory=dict)

    def add_error(self, reason: str) -> None:
        key = reason.split(":", 1)[0]
        self.errors[key] = self.errors.get(key, 0) + 1


class TeacherRunner:
    def __init__(self, backend: TeacherBackend, journal: Journal, cfg: TeacherConfig,
                 budget: Optional[Budget] = None, rng_seed: Optional[int] = None):
        validate(cfg)
        self.backend, self.journal, self.cfg = backend, journal, cfg
        self.report = RunReport()
        self.policy = ReconcilePolicy(cfg.reconcile)
        # a dead run's attempt is released once its key is answered, if the key went out as an
        # Idempotency-Key (the server then bills the key once: see jz3.teacher.journal)
        self.release_orphans = (self.policy == ReconcilePolicy.estimate and backend.billable
                                and bool(getattr(backend, "send_idempotency_key", False)))
        if budget is None:
            b = cfg.budget
            prices = (Prices(b.price_input_per_1m, b.price_output_per_1m) if backend.billable
                      else Prices(0.0, 0.0))
            self._reconcile(prices)
            t = journal.totals()
            budget = Budget(b, prices, calls=t.calls, tokens=t.tokens, cost=t.cost)
        self.budget = budget
        self.params = sampling_params(cfg)
        self._rng = random.Random(rng_seed)
        self._sem: Optional[asyncio.Semaphore] = None
        self._held: Dict[str, tuple] = {}  # key -> dead-run attempt booking held for release

    def _reconcile(self, prices: Prices) -> None:
        t = self.journal.totals()
        self.report.reconcile = {"policy": self.policy.value, "attempts": 0,
                                 "release_on_answer": self.release_orphans,
                                 "orphaned_before": t.orphaned, "released": 0}
        if not t.unsettled:
            return
        b = self.cfg.budget
        seen = self.journal.max_completion_tokens()
        completion = self.cfg.max_tokens if seen is None else min(seen, self.cfg.max_tokens)

        def estimate(prompt: str) -> tuple[int, float]:
            p = prompt_token_bound(prompt, b.chars_per_token, b.prompt_overhead_tokens)
            return p + completion, prices.cost(p, completion)

        rec = self.journal.reconcile(self.policy.value, estimate)
        self.report.reconcile.update(
            attempts=rec.attempts, worst_tokens=rec.worst_tokens,
            worst_cost_usd=round(rec.worst_cost, 6), booked_tokens=rec.booked_tokens,
            booked_cost_usd=round(rec.booked_cost, 6), estimate_completion_tokens=completion)
        log.warning("journal %s: %d attempts were in flight when a previous run died; "
                    "teacher.reconcile=%s books them at %d tokens / $%.4f (worst case %d / "
                    "$%.4f)%s", self.journal.path, rec.attempts, self.policy.value,
                    rec.booked_tokens, rec.booked_cost, rec.worst_tokens, rec.worst_cost,
                    "; released when their key is answered" if self.release_orphans else "")

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
        held: Dict[str, tuple] = {}
        if self.release_orphans:
            for key, e in known.items():
                will_send = e.status == "pending" or (e.status == "failed" and
                                                      self.cfg.retry_failed)
                if will_send and (e.orphan_tokens or e.orphan_cost):
                    held[key] = (e.orphan_tokens, e.orphan_cost)
                    self.budget.hold(e.orphan_tokens, e.orphan_cost)
        self._held = held

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
        h_tok, h_cost = self._held.get(req.key, (0, 0.0))
        if h_tok or h_cost:  # the key is billed once: the held part counts toward its worst case
            worst = Reservation(worst.calls, max(0, worst.tokens - h_tok),
                                max(0.0, worst.cost - h_cost), min(h_tok, worst.tokens),
                                min(h_cost, worst.cost))
        out = await self._attempts(req, worst)
        if h_tok or h_cost:
            if out.status == OutcomeStatus.ok:
                await self.budget.release(h_tok, h_cost)
                self.report.reconcile["released"] = self.report.reconcile.get("released", 0) + 1
            else:
                await self.budget.keep(h_tok, h_cost)
        return out

    async def _attempts(self, req: TeacherRequest, worst: Reservation) -> Outcome:
        assert self._sem is not None
        last = "no attempt"
        sent = 0
        for attempt in range(self.cfg.max_retries + 1):
            # Reserve before taking a concurrency slot: a task waiting for budget never holds a
            # slot, so the attempts that free budget (in flight, or a dead run's held keys) can
            # always run.
            try:
                res = await self.budget.reserve(worst)
            except BudgetExhausted as e:
                self._count(OutcomeStatus.budget_exhausted)
                return Outcome(req.key, OutcomeStatus.budget_exhausted, reason=str(e),
                               attempts=sent)
            try:
                await self._sem.acquire()
            except BaseException:
                await self.budget.settle(res, 0, 0.0, calls=0)  # never sent
                raise
            try:
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
                                           resp.usage, tokens, cost,
                                           release_orphan=req.key in self._held)
                    self._count(OutcomeStatus.ok)
                    return Outcome(req.key, OutcomeStatus.ok, resp.text, model, resp.usage,
                                   resp.finish_reason, attempts=sent)
            finally:
                self._sem.release()
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
