"""Evaluation config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from jz3.config.enums import EvalSetting, GenBackend, WandbMode


@dataclass
class SandboxConfig:
    """Limits of one execution of model-written code (see jz3.eval.sandbox)."""

    cpu_time_s: int = 10
    wall_time_s: float = 15.0
    memory_mb: int = 1024  # RLIMIT_AS
    max_output_bytes: int = 65536  # stdout + stderr; more = killed, reported as output_limit
    max_file_mb: int = 16  # RLIMIT_FSIZE for files written in the working folder
    max_procs: int = 16  # RLIMIT_NPROC (effective for the per-slot sandbox uid when root)
    workers: int = 2  # concurrent executions in SandboxPool
    drop_privileges: bool = True  # as root: run as a dedicated uid per slot (uid_base + slot)
    uid_base: int = 62000
    isolate_network: bool = True  # `unshare -n` when it works here (root / CAP_SYS_ADMIN)
    audit_hook: bool = True  # in-process guard: no fork/exec/socket/writes outside the folder
    tmp_root: Optional[str] = None  # where working folders are made (default: system temp)
    interpreter: Optional[str] = None  # default: this Python, or a same-version system Python
    # (+ this environment's site-packages) when a dropped uid cannot read this one


@dataclass
class EvalConfig:
    benchmarks: List[str] = field(
        default_factory=lambda: [
            "gsm8k", "math-oai", "svamp", "asdiv", "mawps",
            "carp_en", "aqua", "sat_math", "mmlu_stem",
        ]
    )
    settings: List[EvalSetting] = field(
        default_factory=lambda: [EvalSetting.cot, EvalSetting.tool])
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
    tokenizer_path: Optional[str] = None  # default: the model folder
    build_tiny_model: bool = False  # tests/demo: make a random tiny Llama at model_path if absent
    device: str = "auto"  # auto = cuda when available, else cpu
    dtype: str = "auto"  # auto = bf16 on GPU, fp32 on CPU
    top_p: float = 1.0
    seed: int = 0
    max_prompt_tokens: int = 3072  # longer prompts are cut from the left (few-shot first)
    api_key_env: str = "OPENAI_API_KEY"  # openai backend: env var holding the key
    request_concurrency: int = 8  # openai backend
    wandb: WandbMode = WandbMode.disabled
    wandb_project: str = "jz3"
