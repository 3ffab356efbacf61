"""Teacher stage config: prompts, client, budget, journal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from jz3.config.enums import TeacherKind


@dataclass
class BudgetConfig:
    max_calls: int = 10_000
    max_tokens: int = 50_000_000
    max_cost_usd: float = 500.0
    price_input_per_1m: float = 10.0  # USD per 1M prompt tokens
    price_output_per_1m: float = 30.0  # USD per 1M completion tokens


@dataclass
class TeacherConfig:
    kind: TeacherKind = TeacherKind.offline
    base_url: Optional[str] = None
    model: str = "gpt-4"
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 32
    timeout_s: float = 120.0
    max_retries: int = 8
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 2048
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    journal: str = "${run_dir}/teacher_journal.sqlite"
    # Prompt-type mixture: prompt type name -> weight.
    mixture: dict = field(default_factory=dict)
    num_seed: int = 8000  # snippets sent to the teacher for the seed KD set
    num_boost: int = 1300  # extra snippets chosen by influence (boosting)
    # Offline teacher: local pools of human-written problems.
    offline_pools: List[str] = field(default_factory=list)
