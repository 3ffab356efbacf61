"""Synthesis (synthesizer generation over shards) and filter config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from jz3.config.enums import GenBackend, Precision


@dataclass
class FilterConfig:
    input: Optional[str] = None  # synth records (file, folder or glob); None = synthesize stage
    min_problem_chars: int = 20
    max_problem_chars: int = 4000
    min_solution_chars: int = 20
    max_solution_chars: int = 12000
    require_answer: bool = False
    dedup_exact: bool = True
    dedup_near: bool = True
    minhash_threshold: float = 0.8
    minhash_num_perm: int = 128
    minhash_shingle: int = 5  # word shingles
    decontam_ngram: int = 10  # 13 is the other common choice
    decontam_min_matches: int = 1  # shared n-grams needed to call a record contaminated
    decontam_solution: bool = False  # also check the solution text, not only the problem
    decontam_benchmarks: List[str] = field(default_factory=list)  # folders with test.jsonl
    verify_tool: bool = True
    tool_timeout_s: float = 10.0
    tool_workers: int = 2  # concurrent sandbox runs
    workers: int = 2  # processes for checks / decontamination / MinHash (1 = in-process)


@dataclass
class SynthConfig:
    backend: GenBackend = GenBackend.hf
    model_path: Optional[str] = None  # synthesizer HF folder; None = the upstream distill export
    tokenizer_path: Optional[str] = None  # None = the model folder, else data.tokenizer
    input: Optional[str] = None  # snippet records; None = the snippets stage's output
    temperature: float = 1.0
    top_p: float = 1.0  # release CoT synthesis passes no top_p to vLLM
    max_new_tokens: int = 2500
    # lowers a token's logit by this much per earlier occurrence in the completion (OpenAI/vLLM
    # semantics; every backend); the release passes none (0): for small synthesizers that loop
    frequency_penalty: float = 0.0
    tool_temperature: float = 0.1  # tool (code-solution) prompts
    tool_top_p: float = 0.95
    tool_max_new_tokens: int = 5000
    # a completion ends before the first of these strings (CoT prompts / tool prompts); the
    # release's synthesis_cot/generate.py stops at "<|endoftext|>", synthesis_tool/generate.py
    # at none
    stop: List[str] = field(default_factory=list)
    tool_stop: List[str] = field(default_factory=list)
    max_prompt_tokens: int = 4096  # longer prompts are recorded as failed, not truncated
    batch_size: int = 16
    flush_every: int = 64  # records per committed chunk (the resume granularity)
    limit: Optional[int] = None  # first N snippets only (smoke runs)
    device: str = "auto"  # auto = cuda when available, else cpu
    precision: Precision = Precision.fp32
    tensor_parallel_size: int = 1  # vLLM
    gpu_memory_utilization: float = 0.9  # vLLM
    seed: int = 0
