"""Evaluation config."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Dict, List, Optional

from jz3.config.enums import EvalSetting, GenBackend, WandbMode


@dataclass
class SandboxConfig:
    """Limits of one execution of model-written code (see jz3.eval.sandbox)."""

    cpu_time_s: int = 10
    wall_time_s: float = 15.0
    memory_mb: int = 1024  # cgroup memory (every page: heap, tmpfs, memfd) on top of what the
    # server holds; where no memory cgroup exists (`unsafe` only) RLIMIT_AS on top of its size
    max_output_bytes: int = 65536  # stdout + stderr; more = killed, reported as output_limit
    max_file_mb: int = 16  # RLIMIT_FSIZE for files written in the working folder
    max_procs: int = 16  # RLIMIT_NPROC of the program and the jail's pids.max (+ the jail's)
    workers: int = 2  # concurrent executions in SandboxPool
    drop_privileges: bool = True  # as root: the jail runs as uid `uid_base` when it can
    uid_base: int = 62000
    audit_hook: bool = True  # convenience only (readable "blocked" errors), not a security layer
    fork_server: bool = True  # fork per program from a jailed server with sympy/numpy loaded
    unsafe: bool = False  # no jail, or no cgroup for memory/pids/cpu here: run model code
    # anyway (logged loudly; `ExecResult.unenforced` names the limits that are not enforced)
    tmp_root: Optional[str] = None  # unsafe mode only: where working folders are made
    interpreter: Optional[str] = None  # the jail's Python (default: this one, or a same-version
    # system Python + this environment's site-packages when the jail's uid cannot read this one)


class ShotMode(str, Enum):
    """How many exemplars each benchmark x setting gets (jz3.benchmarks registry; docs/EVAL.md)."""

    release = "release"  # the release's sh/eval/cot_model.sh + tool_model.sh: 0-shot, AQuA /
    # SAT-Math / MMLU-STEM 5-shot
    base = "base"  # sh/eval/base_model.sh (base models): 5-shot CoT everywhere
    zero = "zero"  # 0-shot everywhere


class GradingMode(str, Enum):
    """How outputs are graded (jz3.eval.grading; docs/GRADING.md)."""

    strict = "strict"  # jz3's rules: exact numbers, brackets and relations respected
    release = "release"  # the JiuZhang3.0 release's protocol and leniencies (jz3.eval.release)


@dataclass
class EvalConfig:
    """One evaluation run. Benchmarks are `jz3.benchmarks.Benchmark` values; each runs in the
    settings of `settings` that the release evaluates it in (e.g. no tool setting for
    multiple-choice sets); a benchmark whose data is optional (TabMWP) and absent is reported as
    unavailable."""

    benchmarks: List[str] = field(
        default_factory=lambda: [
            "gsm8k", "math-oai", "svamp", "asdiv", "mawps", "carp_en", "tabmwp",
            "minerva_math", "aqua", "sat_math", "mmlu_stem", "gsm-hard",
        ]
    )
    settings: List[EvalSetting] = field(
        default_factory=lambda: [EvalSetting.cot, EvalSetting.tool])
    data_dir: str = "${shared:benchmarks}"
    model_path: Optional[str] = None
    backend: GenBackend = GenBackend.hf
    base_url: Optional[str] = None
    shots: ShotMode = ShotMode.release
    grading: GradingMode = GradingMode.strict  # release = the paper's lenient protocol
    few_shot: bool = False  # legacy switch: true = shots=base
    # benchmark -> CoT exemplars under shots=release, over the registry's count (the release's
    # eval/examples.py ships 4 AQuA exemplars, so its 5-shot AQuA runs 4)
    shot_counts: Dict[str, int] = field(default_factory=lambda: {"aqua": 4})
    limit: Optional[int] = None
    batch_size: int = 8
    max_new_tokens: int = 1024
    temperature: float = 0.0
    num_samples: int = 1  # > 1 = sampling with majority vote
    tool_rounds: int = 4
    # CoT setting: > 0 runs the code a CoT answer ends with (no `boxed`, a closed ```python
    # block) in the sandbox and lets the model continue, for at most this many generations (the
    # release's eval/math_eval.py, prompt type `jiuzhang`: max_func_call 4); 0 = plain CoT
    cot_exec_calls: int = 0
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    out_dir: str = "${run_dir}/eval"
    tokenizer_path: Optional[str] = None  # default: the model folder
    build_tiny_model: bool = False  # tests/demo: make a random tiny Llama at model_path if absent
    device: str = "auto"  # auto = cuda when available, else cpu
    dtype: str = "auto"  # auto = bf16 on GPU, fp32 on CPU
    top_p: float = 1.0
    seed: int = 0
    max_prompt_tokens: int = 3072  # longer prompts are cut from the left (few-shot first)
    chat_template: bool = False  # render prompts through the model's chat template if it has one
    api_key_env: str = "OPENAI_API_KEY"  # openai backend: env var holding the key
    request_concurrency: int = 8  # openai backend
    # vLLM: GPUs one model is split over; None = every visible GPU, as the release
    # (eval/math_eval.py: tensor_parallel_size=len(CUDA_VISIBLE_DEVICES)); the hf backend uses one
    tensor_parallel_size: Optional[int] = None
    wandb: WandbMode = WandbMode.disabled
    wandb_project: str = "jz3"
