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


@dataclass
class TeacherResponse:
    text: str
    model: str
    usage: Dict[str, Any] = field(default_factory=dict)
    finish_reason: Optional[str] = None


class TransientError(Exception):
    """A failed attempt worth retrying (429, 5xx, timeout, dropped connection, bad body)."""

    def __init__(self, reason: str, retry_after: Optional[float] = None, billed: bool = False,
                 usage: Optional[Dict[str, Any]] = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.billed = billed  # the provider may have charged for it (charge the worst case)
        self.usage = usage  # what the provider said it charged, when it said so


class PermanentError(Exception):
    """A failed attempt that retrying cannot fix (400, 401, 403, 404, 422)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


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
