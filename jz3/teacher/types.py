"""What the runner sends to a teacher backend and what comes back."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, Optional, Protocol


@dataclass(frozen=True)
class TeacherRequest:
    key: str  # journal key: sha256 of (model, prompt, sampling params)
    prompt: str
    prompt_type: str
    snippet: str = ""  # the snippet inside the prompt (the offline teacher matches on it)
    params: Optional[Dict[str, Any]] = None  # sampling params (None: the runner's defaults)


@dataclass
class TeacherResponse:
    text: str
    model: str
    usage: Dict[str, Any] = field(default_factory=dict)
    finish_reason: Optional[str] = None
    id: Optional[str] = None  # the provider's response id (the idempotency probe compares it)


class Billing(str, Enum):
    """What an attempt can have cost, by how far it got.

    - `never_sent`: refused, DNS, TLS or connect timeout before the request left: not billed;
    - `answered`: the server answered (a completion, or an error status): its reported usage
      (0 for an error status);
    - `lost`: sent, then no usable answer (timeout after send, dropped connection, malformed
      body): maybe billed, booked at its worst case until its key is answered idempotently.
    """

    never_sent = "never_sent"
    answered = "answered"
    lost = "lost"


class TransientError(Exception):
    """A failed attempt worth retrying (429, 5xx, timeout, dropped or refused connection, bad
    body); `billing` says what it can have cost, `fatal` that the endpoint itself is unusable
    (a refused connection: the circuit breaker counts it)."""

    def __init__(self, reason: str, retry_after: Optional[float] = None,
                 billing: Billing = Billing.answered, usage: Optional[Dict[str, Any]] = None,
                 fatal: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.billing = billing
        self.usage = usage  # what the provider said it charged, when it said so
        self.fatal = fatal


class PermanentError(Exception):
    """A failed attempt that retrying cannot fix (400, 401, 403, 404, 422); `fatal` when it
    condemns every request to the endpoint (401, 403, 404: key, permission, model or URL)."""

    def __init__(self, reason: str, fatal: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal


class OutcomeStatus(str, Enum):
    ok = "ok"
    failed = "failed"
    budget_exhausted = "budget_exhausted"


@dataclass
class Outcome:
    key: str
    status: OutcomeStatus
    text: Optional[str] = None
    model: Optional[str] = None
    usage: Optional[Dict[str, Any]] = None
    finish_reason: Optional[str] = None
    reason: Optional[str] = None
    attempts: int = 0  # attempts sent in this run
    cached: bool = False  # answered from the journal, nothing sent


class TeacherBackend(Protocol):
    name: str  # the model name that goes into the journal key
    billable: bool  # False for the offline teacher (cost 0, calls still counted)

    async def send(self, req: TeacherRequest, params: Dict[str, Any],
                   timeout_s: float) -> TeacherResponse:
        """One attempt; raises TransientError or PermanentError."""
        ...

    async def aclose(self) -> None:
        ...
