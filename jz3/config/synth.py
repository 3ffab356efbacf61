"""Synthesis and filter config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from jz3.config.enums import GenBackend


@dataclass
class FilterConfig:
    min_problem_chars: int = 20
    max_problem_chars: int = 4000
    min_solution_chars: int = 20
    max_solution_chars: int = 12000
    require_answer: bool = False
    dedup_exact: bool = True
    dedup_near: bool = True
    minhash_threshold: float = 0.8
    minhash_num_perm: int = 128
    minhash_shingle: int = 5
    decontam_ngram: int = 10  # 13 is the other common choice
    decontam_benchmarks: List[str] = field(default_factory=list)  # folders with test.jsonl
    verify_tool: bool = True
    tool_timeout_s: float = 10.0


@dataclass
class SynthConfig:
    backend: GenBackend = GenBackend.hf
    model_path: Optional[str] = None  # distilled synthesizer (HF folder)
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 2500
    tool_temperature: float = 0.1
    batch_size: int = 16
    seed: int = 0
    shard: Optional[int] = None  # None = SLURM_ARRAY_TASK_ID or 0
    num_shards: Optional[int] = None  # None = SLURM_ARRAY_TASK_COUNT or 1
    filter: FilterConfig = field(default_factory=FilterConfig)
