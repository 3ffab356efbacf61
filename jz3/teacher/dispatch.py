"""Run many teacher requests: journal first, budget-reserved, concurrent, retried.

For each request: an `ok` journal entry is returned as is (nothing sent, never paid twice);
otherwise, under a concurrency semaphore, each attempt reserves its worst case in the budget
and in the journal, is sent, and is settled by its billing class (`jz3.teacher.types.Billing`):
never sent (refused, DNS, TLS) at 0 and no call, answered at its reported usage, lost (timeout
after send, dropped connection, broken body) at its worst case. Transient errors are retried
with exponential backoff and full jitter, never sooner than the server's Retry-After; permanent
errors (4xx) and exhausted retries are journalled as `failed` with their reason. The semaphore
is not held while sleeping.

Idempotency (`teacher.idempotency`): every attempt carries the request's journal key as
`Idempotency-Key`. Before the first request the runner decides whether the endpoint honours it
(`probe`: one tiny request sent twice under one key; honoured when the second answer is the
first one replayed, same response id). Where it is honoured, lost attempts, this run's and a
killed run's, are given back once their key is answered (the key was billed once, at the answer's
usage); where not, they stay booked at their worst case and `teacher.reconcile=estimate` falls
back to `strict`, so the server's bill never exceeds the booked spend.

Circuit breaker: `teacher.breaker_fatal_errors` consecutive fatal errors (refused connection,
DNS, TLS, 401, 403, 404) fail every request not yet answered with the cause (`circuit_open:`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from jz3.config.enums import IdempotencyMode, PromptType, ReconcilePolicy
from jz3.config.teacher import TeacherConfig
from jz3.config.validate import check
from jz3.teacher.budget import Budget, BudgetExhausted, Prices, Reservation, prompt_token_bound
from jz3.teacher.journal import Journal, JournalEntry
from jz3.teacher.types import (
    Billing,
    Outcome,
    OutcomeStatus,
    PermanentError,
    TeacherBackend,
    TeacherRequest,
    TransientError,
)

log = logging.getLogger(__name__)

PROBE_PROMPT = "Reply with the single word: ok."
PROBE_MAX_TOKENS = 8


def validate(cfg: TeacherConfig, prefix: str = "teacher") -> None:
    """Range checks on the teacher's counts, limits and rates (jz3.config.validate); the error
    names the key under `prefix`."""
    check(cfg, prefix)


def sampling_params(cfg: TeacherConfig, prompt_type: Optional[str] = None) -> Dict[str, Any]:
    """The sampling params that, with model and prompt, make a request's journal key: the
    tool prompt's own (`tool_*`) where set; `stop` only when there is one (older keys hold)."""
    tool = prompt_type == PromptType.tool.value

    def pick(own: Any, base: Any) -> Any:
        return base if own is None or not tool else own

    out: Dict[str, Any] = {"temperature": pick(cfg.tool_temperature, cfg.temperature),
                           "top_p": pick(cfg.tool_top_p, cfg.top_p),
                           "max_tokens": pick(cfg.tool_max_tokens, cfg.max_tokens)}
    stop = pick(cfg.tool_stop, cfg.stop)
    if stop:
        out["stop"] = list(stop)
    return out


def _class_stats() -> Dict[str, Dict[str, Any]]:
    """Per billing class: attempts, booked, and billed as far as the client can know (never
    sent: 0; answered: the reported usage, = booked; lost: unknown, at most booked)."""
    out: Dict[str, Dict[str, Any]] = {}
    for b in Billing:
        billed = None if b == Billing.lost else 0.0
        out[b.value] = {"attempts": 0, "booked_tokens": 0, "booked_cost_usd": 0.0,
                        "billed_cost_usd": billed}
    return out


@dataclass
class RunReport:
    requests: int = 0
    cached: int = 0  # answered from the journal
    ok: int = 0
    failed: int = 0
    budget_exhausted: int = 0
    attempts: int = 0  # attempts started in this run (never-sent ones included)
    retries: int = 0
    errors: Dict[str, int] = field(default_factory=dict)  # attempt error reason -> count
    # this run's attempts by billing class: how many, what they are booked at (a lost
    # attempt's booking drops to 0 when its key is answered idempotently: `released_*`)
    billing: Dict[str, Dict[str, Any]] = field(default_factory=_class_stats)
    # the known bill: usage the server reported for this run's answers (lost attempts unknown)
    billed_tokens: int = 0
    billed_cost_usd: float = 0.0
    # idempotency: mode, the probe's verdict, whether keys are taken as honoured
    idempotency: Dict[str, Any] = field(default_factory=dict)
    # attempts a killed run left in flight: policy, how many, worst case vs booked, released
    reconcile: Dict[str, Any] = field(default_factory=dict)
    breaker: Optional[str] = None  # why the circuit breaker stopped the run
    causes: Dict[str, int] = field(default_factory=dict)  # failed request's cause -> count

    def add_error(self, reason: str) -> None:
        key = reason.split(":", 1)[0]
        self.errors[key] = self.errors.get(key, 0) + 1

    def book(self, billing: Billing, tokens: int, cost: float) -> None:
        c = self.billing[billing.value]
        c["attempts"] += 1
        c["booked_tokens"] += int(tokens)
        c["booked_cost_usd"] = round(c["booked_cost_usd"] + cost, 9)
        if billing == Billing.answered:
            c["billed_cost_usd"] = c["booked_cost_usd"]

    def release_lost(self, tokens: int, cost: float) -> None:
        c = self.billing[Billing.lost.value]
        c["booked_tokens"] -= int(tokens)
        c["booked_cost_usd"] = round(c["booked_cost_usd"] - cost, 9)
        c["released_tokens"] = c.get("released_tokens", 0) + int(tokens)
        c["released_cost_usd"] = round(c.get("released_cost_usd", 0.0) + cost, 9)


def cause_of(reason: Optional[str]) -> str:
    """A failed request's reason shortened to its cause: `http_401 'Incorrect API key'`,
    `connect_failed: ConnectionRefusedError`, `budget_exhausted`, ..."""
    r = (reason or "unknown").strip()
    for prefix in ("circuit_open: ", "teacher_failed: "):
        if r.startswith(prefix):
            r = r[len(prefix):]
    if r.startswith("retries_exhausted:") and "last error " in r:
        r = r.split("last error ", 1)[1]
    if r.startswith("budget_exhausted"):
        return "budget_exhausted"
    if r.startswith("http_") and ": " in r:
        code, msg = r.split(": ", 1)
        return f"{code} {msg.strip()[:80]!r}"
    return r[:120]


class TeacherRunner:
    def __init__(self, backend: TeacherBackend, journal: Journal, cfg: TeacherConfig,
                 budget: Optional[Budget] = None, rng_seed: Optional[int] = None):
        validate(cfg)
        self.backend, self.journal, self.cfg = backend, journal, cfg
        self.report = RunReport()
        self.policy = ReconcilePolicy(cfg.reconcile)
        self.mode = IdempotencyMode(cfg.idempotency)
        b = cfg.budget
        self.prices = (Prices(b.price_input_per_1m, b.price_output_per_1m) if backend.billable
                       else Prices(0.0, 0.0))
        self._given_budget = budget
        self.budget: Budget = budget or Budget(b, self.prices)  # replaced in `run`
        self.params = sampling_params(cfg)
        self.honoured = False  # does the endpoint bill an Idempotency-Key once (set in `run`)
        self._rng = random.Random(rng_seed)
        self._sem: Optional[asyncio.Semaphore] = None
        self._held: Dict[str, tuple] = {}  # key -> dead-run attempt booking held for release
        self._lost: Dict[str, Tuple[int, float]] = {}  # key -> this run's releasable lost
        self._fatal_streak = 0
        self._tripped: Optional[str] = None
        self._bar: Optional[tqdm] = None
        self._probe_first_id: Optional[str] = None

    # ------------------------------------------------------------ before the first request
    async def _probe(self) -> str:
        """Send one tiny request twice under one fresh key: `honoured` when the second answer
        replays the first (same response id), `ignored` when it does not, `failed: <why>`
        (a fatal error, or transient ones past a few retries). Every attempt is booked."""
        key = f"idempotency-probe-{uuid.uuid4().hex}"
        params = {**self.params, "max_tokens": PROBE_MAX_TOKENS}
        params.pop("stop", None)
        req = TeacherRequest(key, PROBE_PROMPT, "probe", params=params)
        b = self.cfg.budget
        p_tok = prompt_token_bound(PROBE_PROMPT, b.chars_per_token, b.prompt_overhead_tokens)
        ids: List[Optional[str]] = []
        try:
            while len(ids) < 2:
                ok, value = await self._probe_send(req, params, p_tok)
                if not ok:
                    return f"failed: {value}"
                ids.append(value)
        finally:
            self.journal.mark_probe(key)
        return "honoured" if ids[0] and ids[0] == ids[1] else "ignored"

    async def _probe_send(self, req: TeacherRequest, params: Dict[str, Any],
                          p_tok: int) -> Tuple[bool, Optional[str]]:
        """(True, one probe answer's response id) retrying transient errors, or (False, why
        it failed)."""
        tries = 1 + min(self.cfg.max_retries, 4)
        reason = "no attempt"
        for attempt in range(tries):
            worst = self.budget.worst_case(p_tok, PROBE_MAX_TOKENS)
            if not self.budget.try_reserve(worst):
                return False, "no budget for the probe"
            self.journal.begin_attempt(req.key, self.backend.name, req.prompt, params,
                                       worst.tokens, worst.cost)
            try:
                resp = await self.backend.send(req, params, self.cfg.timeout_s)
            except (TransientError, PermanentError) as e:
                billing = e.billing if isinstance(e, TransientError) else Billing.answered
                tok, cost = (worst.tokens, worst.cost) if billing == Billing.lost else (0, 0.0)
                unsent = billing == Billing.never_sent
                await self.budget.settle(worst, tok, cost, calls=0 if unsent else 1)
                self.journal.settle_error(req.key, e.reason, tok, cost, unsent=unsent)
                self.report.book(billing, tok, cost)
                self._note_fatal(e)
                reason = e.reason
                if isinstance(e, PermanentError) or e.fatal:
                    return False, reason
                await asyncio.sleep(self.backoff(attempt, e.retry_after))
                continue
            tok, cost = self._usage_charge(resp.usage, worst)
            if resp.id and resp.id == self._probe_first_id:
                tok, cost = 0, 0.0  # the first answer replayed: one generation, billed once
            await self.budget.settle(worst, tok, cost)
            self.journal.settle_ok(req.key, resp.text, resp.model or self.backend.name,
                                   resp.finish_reason, resp.usage, tok, cost)
            self.report.book(Billing.answered, tok, cost)
            if self._probe_first_id is None:
                self._probe_first_id = resp.id or ""
            return True, resp.id
        return False, f"{tries} attempts, last error {reason}"

    async def _decide_idempotency(self, to_send: bool) -> None:
        verdict = None
        if self.mode == IdempotencyMode.trust:
            self.honoured = True
        elif self.mode == IdempotencyMode.probe and self.backend.billable and to_send:
            verdict = await self._probe()
            self.honoured = verdict == "honoured"
        self.report.idempotency = {"mode": self.mode.value, "probe": verdict,
                                   "honoured": self.honoured}
        if verdict is not None:
            log.info("teacher %s: Idempotency-Key probe: %s", self._where(), verdict)

    def _where(self) -> str:
        return str(getattr(self.backend, "base_url", None) or self.backend.name)

    def _reconcile(self) -> None:
        t = self.journal.totals()
        effective = self.policy
        if effective == ReconcilePolicy.estimate and not self.honoured:
            effective = ReconcilePolicy.strict  # only a key billed once makes an estimate safe
        self.report.reconcile = {"policy": effective.value, "configured": self.policy.value,
                                 "attempts": 0, "release_on_answer": self.release_orphans,
                                 "orphaned_before": t.orphaned, "released": 0}
        if not t.unsettled:
            return
        b = self.cfg.budget
        seen = self.journal.max_completion_tokens()
        completion = self.cfg.max_tokens if seen is None else min(seen, self.cfg.max_tokens)

        def estimate(prompt: str) -> tuple[int, float]:
            p = prompt_token_bound(prompt, b.chars_per_token, b.prompt_overhead_tokens)
            return p + completion, self.prices.cost(p, completion)

        rec = self.journal.reconcile(effective.value, estimate)
        self.report.reconcile.update(
            attempts=rec.attempts, worst_tokens=rec.worst_tokens,
            worst_cost_usd=round(rec.worst_cost, 6), booked_tokens=rec.booked_tokens,
            booked_cost_usd=round(rec.booked_cost, 6), estimate_completion_tokens=completion)
        log.warning("journal %s: %d attempts were in flight when a previous run died; "
                    "teacher.reconcile=%s books them at %d tokens / $%.4f (worst case %d / "
                    "$%.4f)%s", self.journal.path, rec.attempts, effective.value,
                    rec.booked_tokens, rec.booked_cost, rec.worst_tokens, rec.worst_cost,
                    "; released when their key is answered" if self.release_orphans else "")

    @property
    def release_orphans(self) -> bool:
        """Lost attempts are given back once their key is answered (keys billed once)."""
        return self.honoured and self.backend.billable

    def _budget_from_journal(self) -> Budget:
        t = self.journal.totals()
        return Budget(self.cfg.budget, self.prices, calls=t.calls, tokens=t.tokens, cost=t.cost)

    # ------------------------------------------------------------ the run
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
        unique: Dict[str, asyncio.Task] = {}
        keys = list(dict.fromkeys(r.key for r in requests))
        known = self.journal.get_many(keys)

        def will_send(e: Optional[JournalEntry]) -> bool:
            return e is None or e.status == "pending" or (e.status == "failed" and
                                                          self.cfg.retry_failed)

        try:
            if self._given_budget is None:
                self.budget = self._budget_from_journal()  # the probe is booked in it
                await self._decide_idempotency(any(will_send(known.get(r.key))
                                                   for r in requests))
                self._reconcile()
                self.budget = self._budget_from_journal()
                known = self.journal.get_many(keys)  # with the dead run's attempts reconciled
            else:  # a budget from the caller: no probe, no reconciliation
                self.honoured = self.mode == IdempotencyMode.trust
                self.report.idempotency = {"mode": self.mode.value, "probe": None,
                                           "honoured": self.honoured}
            held: Dict[str, tuple] = {}
            if self.release_orphans:
                for key, e in known.items():
                    if will_send(e) and (e.orphan_tokens or e.orphan_cost):
                        held[key] = (e.orphan_tokens, e.orphan_cost)
                        self.budget.hold(e.orphan_tokens, e.orphan_cost)
            self._held = held
            self._bar = tqdm(total=len(requests), desc="teacher", unit="req",
                             disable=not progress, mininterval=1.0)

            async def one(req: TeacherRequest) -> Outcome:
                out = await self._one(req, known.get(req.key))
                self._tick()
                return out

            for req in requests:
                if req.key not in unique:
                    unique[req.key] = asyncio.ensure_future(one(req))
            done = await asyncio.gather(*unique.values())
        finally:
            if self._bar is not None:
                self._bar.close()
            await self.backend.aclose()
        by_key = dict(zip(unique.keys(), done, strict=True))
        outs = [by_key[r.key] for r in requests]
        for o in by_key.values():
            if o.status != OutcomeStatus.ok:
                c = cause_of(o.reason)
                self.report.causes[c] = self.report.causes.get(c, 0) + 1
        self._log_summary()
        return outs

    def _tick(self) -> None:
        if self._bar is None:
            return
        r = self.report
        self._bar.set_postfix_str(
            f"answered={r.ok} failed={r.failed + r.budget_exhausted} "
            f"booked=${self.budget.spent_cost:.4f} billed=${r.billed_cost_usd:.4f}",
            refresh=False)
        self._bar.update(1)

    def _log_summary(self) -> None:
        r = self.report
        log.info("teacher %s: %d requests: %d answered (%d from the journal), %d failed, %d "
                 "over budget; attempts by billing class %s; billed (reported) %d tokens / "
                 "$%.4f; booked in all %d tokens / $%.4f", self._where(), r.requests, r.ok,
                 r.cached, r.failed, r.budget_exhausted,
                 {k: (v["attempts"], round(v["booked_cost_usd"], 4))
                  for k, v in r.billing.items()},
                 r.billed_tokens, r.billed_cost_usd, self.budget.spent_tokens,
                 self.budget.spent_cost)

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
        params = req.params or self.params
        p_tokens = prompt_token_bound(req.prompt, b.chars_per_token, b.prompt_overhead_tokens)
        worst = self.budget.worst_case(p_tokens, int(params["max_tokens"]))
        h_tok, h_cost = self._held.get(req.key, (0, 0.0))
        if h_tok or h_cost:  # the key is billed once: the held part counts toward its worst case
            worst = Reservation(worst.calls, max(0, worst.tokens - h_tok),
                                max(0.0, worst.cost - h_cost), min(h_tok, worst.tokens),
                                min(h_cost, worst.cost))
        out = await self._attempts(req, params, worst)
        if h_tok or h_cost:
            if out.status == OutcomeStatus.ok:
                await self.budget.release(h_tok, h_cost)
                self.report.reconcile["released"] = self.report.reconcile.get("released", 0) + 1
            else:
                await self.budget.keep(h_tok, h_cost)
        return out

    def _note_fatal(self, e: Exception) -> None:
        """Count consecutive fatal errors; trip the breaker at `teacher.breaker_fatal_errors`."""
        if not getattr(e, "fatal", False):
            self._fatal_streak = 0
            return
        self._fatal_streak += 1
        n = self.cfg.breaker_fatal_errors
        if n and self._fatal_streak >= n and self._tripped is None:
            reason = getattr(e, "reason", str(e))
            self._tripped = f"circuit_open: {reason}"
            self.report.breaker = (f"{n} consecutive fatal errors from {self._where()}, the "
                                   f"last: {reason}")
            log.error("teacher: stopping: %s", self.report.breaker)

    def _usage_charge(self, usage: Optional[Dict[str, Any]],
                      worst: Reservation) -> Tuple[int, float]:
        if not usage:
            return worst.tokens, worst.cost
        pt = int(usage.get("prompt_tokens") or 0)
        ct = int(usage.get("completion_tokens") or 0)
        return pt + ct, self.budget.prices.cost(pt, ct)

    def _fail(self, req: TeacherRequest, reason: str, sent: int) -> Outcome:
        self.journal.mark_failed(req.key, reason)
        self._count(OutcomeStatus.failed)
        return Outcome(req.key, OutcomeStatus.failed, reason=reason, attempts=sent)

    async def _attempts(self, req: TeacherRequest, params: Dict[str, Any],
                        worst: Reservation) -> Outcome:
        assert self._sem is not None
        last = "no attempt"
        sent = 0
        for attempt in range(self.cfg.max_retries + 1):
            if self._tripped is not None:
                return self._fail(req, self._tripped, sent)
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
                if self._tripped is not None:
                    await self.budget.settle(res, 0, 0.0, calls=0)
                    continue
                self.journal.begin_attempt(req.key, self.backend.name, req.prompt, params,
                                           res.tokens, res.cost)
                sent += 1
                self.report.attempts += 1
                try:
                    resp = await self.backend.send(req, params, self.cfg.timeout_s)
                except TransientError as e:
                    billing, tokens, cost = self._charge_error(e, res)
                    releasable = billing == Billing.lost and not e.reason.startswith(
                        ("malformed", "empty_"))
                    await self.budget.settle(res, tokens, cost,
                                             calls=0 if billing == Billing.never_sent else 1)
                    self.journal.settle_error(req.key, e.reason, tokens, cost,
                                              unsent=billing == Billing.never_sent,
                                              releasable=releasable)
                    if releasable:
                        t0, c0 = self._lost.get(req.key, (0, 0.0))
                        self._lost[req.key] = (t0 + tokens, c0 + cost)
                    self.report.book(billing, tokens, cost)
                    self.report.add_error(e.reason)
                    self._note_fatal(e)
                    log.debug("teacher %s attempt %d: %s (%s, booked %d tokens)",
                              req.key[:12], attempt + 1, e.reason, billing.value, tokens)
                    last, retry_after = e.reason, e.retry_after
                except PermanentError as e:
                    await self.budget.settle(res, 0, 0.0)
                    self.journal.settle_error(req.key, e.reason, 0, 0.0)
                    self.report.book(Billing.answered, 0, 0.0)
                    self.report.add_error(e.reason)
                    self._note_fatal(e)
                    log.debug("teacher %s attempt %d: %s (permanent)", req.key[:12],
                              attempt + 1, e.reason)
                    return self._fail(req, e.reason, sent)
                except BaseException:
                    # Cancelled or a bug: keep the worst case charged (we cannot know better).
                    await self.budget.settle(res, res.tokens, res.cost)
                    raise
                else:
                    self._fatal_streak = 0
                    tokens, cost = self._usage_charge(resp.usage, res)
                    await self.budget.settle(res, tokens, cost)
                    model = resp.model or self.backend.name
                    release = self.release_orphans and (req.key in self._held or
                                                        req.key in self._lost)
                    self.journal.settle_ok(req.key, resp.text, model, resp.finish_reason,
                                           resp.usage, tokens, cost, release_orphan=release)
                    self.report.book(Billing.answered, tokens, cost)
                    if resp.usage:
                        self.report.billed_tokens += tokens
                        self.report.billed_cost_usd = round(self.report.billed_cost_usd + cost,
                                                            9)
                    lost = self._lost.pop(req.key, None)
                    if lost and self.release_orphans:
                        await self.budget.refund(*lost)
                        self.report.release_lost(*lost)
                    log.debug("teacher %s attempt %d: answered (%d tokens)", req.key[:12],
                              attempt + 1, tokens)
                    self._count(OutcomeStatus.ok)
                    return Outcome(req.key, OutcomeStatus.ok, resp.text, model, resp.usage,
                                   resp.finish_reason, attempts=sent)
            finally:
                self._sem.release()
            if attempt < self.cfg.max_retries:
                self.report.retries += 1
                await asyncio.sleep(self.backoff(attempt, retry_after))
        reason = f"retries_exhausted: {sent} attempts, last error {last}"
        return self._fail(req, reason, sent)

    def _charge_error(self, e: TransientError, res: Reservation) -> Tuple[Billing, int, float]:
        """A failed attempt's billing class and booking: its usage if reported, worst case if
        lost, 0 if never sent or answered with an error status."""
        if e.usage:
            tok, cost = self._usage_charge(e.usage, res)
            return Billing.answered, tok, cost
        if e.billing == Billing.lost:
            return Billing.lost, res.tokens, res.cost
        return e.billing, 0, 0.0

    def _count(self, st: OutcomeStatus) -> None:
        if st == OutcomeStatus.ok:
            self.report.ok += 1
        elif st == OutcomeStatus.failed:
            self.report.failed += 1
        else:
            self.report.budget_exhausted += 1

    def run_sync(self, requests: Sequence[TeacherRequest], progress: bool = True) -> List[Outcome]:
        return asyncio.run(self.run(requests, progress))
