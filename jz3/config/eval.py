"""Evaluation config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from jz3.config.enums import GenBackend


@dataclass
class SandboxConfig:
    cpu_time_s: int = 10
    wall_time_s: float = 15.0
    memory_mb: int = 1024
    max_output_bytes: int = 65536
    workers: int = 2


@dataclass
class EvalConfig:
    benchmarks: List[str] = field(
        default_factory=lambda: [
            "gsm8k", "math-oai", "svamp", "asdiv", "mawps",
            "carp_en", "aqua", "sat_math", "mmlu_stem",
        ]
    )
    settings: List[str] = field(default_factory=lambda: ["cot", "tool"])
    data_dir: str = "${shared:benchmarks}"
    model_path: Optional[str] = None
    backend: GenBackend = GenBackend.hf
    base_url: Optional[str] = None
    few_shot: bool = False
    limit: Optional[int] = None
    batch_size: int = 8
    max_new_tokens: int = 1024
    temperature: float = 0.0
    num_samples: int = 1  # > 1 = sampling with majority vote
    tool_rounds: int = 4
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    out_dir: str = "${run_dir}/eval"
