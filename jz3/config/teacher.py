"""Teacher stage config: prompts, client, budget, journal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from jz3.config.enums import IdempotencyMode, JournalSync, ReconcilePolicy, TeacherKind


@dataclass
class BudgetConfig:
    """Hard caps over every run sharing one journal; each HTTP attempt counts as a call."""

    max_calls: int = 10_000
    max_tokens: int = 50_000_000
    max_cost_usd: float = 500.0
    price_input_per_1m: float = 10.0  # USD per 1M prompt tokens
    price_output_per_1m: float = 30.0  # USD per 1M completion tokens
    # Prompt-token upper bound = UTF-8 bytes / chars_per_token + overhead (1.0: a true bound).
    chars_per_token: float = 1.0
    prompt_overhead_tokens: int = 16


@dataclass
class TeacherConfig:
    kind: TeacherKind = TeacherKind.offline
    base_url: Optional[str] = None
    model: str = "gpt-4"
    api_key: Optional[str] = None  # else read from the environment variable `api_key_env`
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 32
    timeout_s: float = 120.0
    max_retries: int = 8
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 2048
    # strings that end a completion (the release's CoT teacher: ["```output", "---"])
    stop: List[str] = field(default_factory=list)
    # the tool prompt's sampling (null: as above); the release's tool teacher sends none of
    # them (the API defaults: temperature 1, top_p 1, no stop)
    tool_temperature: Optional[float] = None
    tool_top_p: Optional[float] = None
    tool_max_tokens: Optional[int] = None
    tool_stop: Optional[List[str]] = None
    # Every attempt carries the journal key as `Idempotency-Key` (except with `none`); whether
    # the endpoint honours it decides what a lost attempt may cost (jz3/teacher/dispatch.py):
    # `probe` asks it at start-up, `trust` assumes it, `none` assumes not.
    idempotency: IdempotencyMode = IdempotencyMode.probe
    # stop after this many consecutive fatal errors (refused connection, DNS, TLS, 401, 403,
    # 404): every remaining request fails with the cause; 0 = never
    breaker_fatal_errors: int = 5
    retry_failed: bool = True  # on a rerun, try journal entries that failed before again
    aiohttp_transport: bool = True  # openai's aiohttp HTTP transport (faster than httpx's pool)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    journal: str = "${run_dir}/teacher_journal.sqlite"
    journal_sync: JournalSync = JournalSync.normal
    # attempts in flight when a run died: how a rerun books them (jz3/teacher/journal.py)
    reconcile: ReconcilePolicy = ReconcilePolicy.estimate
    # Offline teacher: local pools of human-written problems (GSM8K-style {question, answer} or
    # JiuZhang3.0 {input, output}); each item is sorted into the elementary, advanced or tool
    # tier by its content, and a request gets one of its tier's `offline_top_k` nearest items.
    offline_pools: List[str] = field(default_factory=list)
    offline_top_k: int = 4
    # Pool items whose completion is longer than this many characters are left out (counted as
    # `too_long`); null = all. Short completions let a tiny synthesizer learn the format sooner.
    offline_max_chars: Optional[int] = None
