"""A hard budget on calls, tokens and money that holds with many requests in flight.

Each attempt reserves its worst case before it is sent (1 call; prompt-token upper bound +
`max_tokens`; their price) and is settled to its real usage afterwards. A reservation is granted
only if spent + reserved + it stays within every limit; while in-flight reservations block it,
the caller waits for them to settle; when even spent + it exceeds a limit, the request is refused
(`BudgetExhausted`). Spent starts from the journal's totals, so reruns share one budget;
attempts a killed run left in flight are re-booked first (`Journal.reconcile`, policy
`teacher.reconcile`) and may be released when their key is answered (`release`).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Dict, Optional

from jz3.config.teacher import BudgetConfig


class BudgetExhausted(RuntimeError):
    """This request can never fit in what is left of the budget."""


@dataclass(frozen=True)
class Prices:
    input_per_1m: float = 0.0
    output_per_1m: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_1m + completion_tokens * self.output_per_1m) / 1e6


@dataclass
class Reservation:
    calls: int
    tokens: int
    cost: float
    # a key whose dead-run attempt is held (`hold`): the key is billed once, so its new attempt
    # reserves only worst case - held; the settle check allows the held part on top
    offset_tokens: int = 0
    offset_cost: float = 0.0


def prompt_token_bound(prompt: str, chars_per_token: float, overhead: int) -> int:
    """An upper bound on the prompt's tokens: UTF-8 bytes / `chars_per_token` + chat overhead.

    With `chars_per_token=1` it is a true bound for byte-level BPE tokenizers (a token is at
    least one byte).
    """
    return int(math.ceil(len(prompt.encode("utf-8")) / chars_per_token)) + overhead


class Budget:
    def __init__(self, cfg: BudgetConfig, prices: Prices, calls: int = 0, tokens: int = 0,
                 cost: float = 0.0):
        self.cfg = cfg
        self.prices = prices
        self.spent_calls, self.spent_tokens, self.spent_cost = calls, tokens, cost
        self.res_calls, self.res_tokens, self.res_cost = 0, 0, 0.0
        self.over_reservation = 0  # settles that cost more than reserved (a bad token bound)
        self.released_tokens, self.released_cost = 0, 0.0  # dead runs' attempts un-booked
        self._cond: Optional[asyncio.Condition] = None

    def _fits(self, calls: int, tokens: int, cost: float) -> bool:
        eps = 1e-9
        return (calls <= self.cfg.max_calls and tokens <= self.cfg.max_tokens
                and cost <= self.cfg.max_cost_usd + eps)

    def can_ever_fit(self, r: Reservation) -> bool:
        return self._fits(self.spent_calls + r.calls, self.spent_tokens + r.tokens,
                          self.spent_cost + r.cost)

    def try_reserve(self, r: Reservation) -> bool:
        if not self._fits(self.spent_calls + self.res_calls + r.calls,
                          self.spent_tokens + self.res_tokens + r.tokens,
                          self.spent_cost + self.res_cost + r.cost):
            return False
        self.res_calls += r.calls
        self.res_tokens += r.tokens
        self.res_cost += r.cost
        return True

    def worst_case(self, prompt_tokens: int, max_tokens: int) -> Reservation:
        return Reservation(1, prompt_tokens + max_tokens, self.prices.cost(prompt_tokens, max_tokens))

    async def reserve(self, r: Reservation) -> Reservation:
        """Reserve `r`, waiting for in-flight attempts to settle; raises `BudgetExhausted`."""
        if self._cond is None:
            self._cond = asyncio.Condition()
        async with self._cond:
            while True:
                if not self.can_ever_fit(r):
                    raise BudgetExhausted(self._why(r))
                if self.try_reserve(r):
                    return r
                await self._cond.wait()

    async def settle(self, r: Reservation, tokens: int, cost: float, calls: int = 1) -> None:
        """Release reservation `r` and book what the attempt really used."""
        if tokens > r.tokens + r.offset_tokens or cost > r.cost + r.offset_cost + 1e-12:
            self.over_reservation += 1
        self.res_calls -= r.calls
        self.res_tokens -= r.tokens
        self.res_cost -= r.cost
        self.spent_calls += calls
        self.spent_tokens += tokens
        self.spent_cost += cost
        if self._cond is not None:
            async with self._cond:
                self._cond.notify_all()

    def hold(self, tokens: int, cost: float) -> None:
        """Move a dead run's attempt from spent to reserved: its key is re-sent in this run and
        may be answered idempotently (then `release`), else it is spent again (`keep`)."""
        self.spent_tokens -= tokens
        self.spent_cost -= cost
        self.res_tokens += tokens
        self.res_cost += cost

    async def _unhold(self, tokens: int, cost: float, spend: bool) -> None:
        self.res_tokens -= tokens
        self.res_cost -= cost
        if spend:
            self.spent_tokens += tokens
            self.spent_cost += cost
        else:
            self.released_tokens += tokens
            self.released_cost += cost
        if self._cond is not None:
            async with self._cond:
                self._cond.notify_all()

    async def release(self, tokens: int, cost: float) -> None:
        """Un-book a held attempt: its key was answered idempotently (the new attempt's real
        usage is the key's one charge; see jz3.teacher.journal)."""
        await self._unhold(tokens, cost, spend=False)

    async def refund(self, tokens: int, cost: float) -> None:
        """Un-book lost attempts of this run whose key was then answered idempotently."""
        self.spent_tokens -= tokens
        self.spent_cost -= cost
        self.released_tokens += tokens
        self.released_cost += cost
        if self._cond is not None:
            async with self._cond:
                self._cond.notify_all()

    async def keep(self, tokens: int, cost: float) -> None:
        """A held attempt's key ended unanswered in this run: book it as spent again."""
        await self._unhold(tokens, cost, spend=True)

    def _why(self, r: Reservation) -> str:
        parts = []
        if self.spent_calls + r.calls > self.cfg.max_calls:
            parts.append(f"calls {self.spent_calls}+{r.calls} > {self.cfg.max_calls}")
        if self.spent_tokens + r.tokens > self.cfg.max_tokens:
            parts.append(f"tokens {self.spent_tokens}+{r.tokens} > {self.cfg.max_tokens}")
        if self.spent_cost + r.cost > self.cfg.max_cost_usd:
            parts.append(f"cost ${self.spent_cost:.4f}+${r.cost:.4f} > ${self.cfg.max_cost_usd}")
        return "budget_exhausted: " + "; ".join(parts)

    def report(self) -> Dict[str, float]:
        return {"calls": self.spent_calls, "tokens": self.spent_tokens,
                "cost_usd": round(self.spent_cost, 6), "max_calls": self.cfg.max_calls,
                "max_tokens": self.cfg.max_tokens, "max_cost_usd": self.cfg.max_cost_usd,
                "over_reservation": self.over_reservation,
                "released_tokens": self.released_tokens,
                "released_cost_usd": round(self.released_cost, 6)}
