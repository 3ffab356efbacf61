"""Range checks on every count, limit, concurrency, retry, budget, batch size and length setting.

`check(cfg, prefix)` walks a typed config (the root `JZ3Config` or any section) and raises
`ConfigValueError` naming the full key, e.g. `stages.kd_seed.count must be >= 0, got -3`.
`to_object` runs it on every composed config, so a launch fails before any work starts; stage
functions that take a section directly (tests, notebooks) call it with their own prefix.
Rules are declared per dataclass below (a subclass inherits its bases' rules); `None` always
passes (an optional limit left unset). Cross-field rules (`min <= max`) follow the table.
`check_stages(cfg, names)` adds what the selected stages need to run at all (a teacher's
endpoint, key and budget); the pipeline calls it before its first stage.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from jz3.config.data import DataConfig, DataSource, SnippetConfig, TokenizerConfig
from jz3.config.deepspeed import DeepSpeedConfig
from jz3.config.enums import TeacherKind
from jz3.config.eval import EvalConfig, SandboxConfig
from jz3.config.influence import InfluenceConfig, LoraConfig
from jz3.config.launcher import StageResources
from jz3.config.model import ModelConfig
from jz3.config.pipeline import PipelineConfig
from jz3.config.stages import (
    InfluenceStage,
    KDStage,
    LossEvalConfig,
    SynthesizeStage,
)
from jz3.config.synth import FilterConfig, SynthConfig
from jz3.config.teacher import BudgetConfig, TeacherConfig
from jz3.config.trainer import TrainerConfig


class ConfigValueError(ValueError):
    """A config value out of its range; the message names the full key."""


_Test = Tuple[Callable[[Any], bool], str]
_RANGES: Dict[str, _Test] = {
    ">= 0": (lambda v: v >= 0, ">= 0"),
    ">= 1": (lambda v: v >= 1, ">= 1"),
    ">= 2": (lambda v: v >= 2, ">= 2"),
    "> 0": (lambda v: v > 0, "> 0"),
    ">= -1": (lambda v: v >= -1, ">= -1 (-1 = derive from epochs)"),
    "(0, 1]": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "[0, 1]": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "[0, 1)": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "0..3": (lambda v: v in (0, 1, 2, 3), "one of 0, 1, 2, 3"),
    "[-2, 2]": (lambda v: -2 <= v <= 2, "in [-2, 2] (the OpenAI/vLLM range)"),
}

# dataclass -> field -> range name (a key of _RANGES)
RULES: Dict[type, Dict[str, str]] = {
    SnippetConfig: {"size": ">= 1", "min_size": ">= 0", "max_snippets": ">= 1"},
    TokenizerConfig: {"vocab_size": ">= 1", "train_max_sentences": ">= 1"},
    DataSource: {"weight": ">= 0"},
    DataConfig: {"seq_len": ">= 2", "num_workers": ">= 0"},
    DeepSpeedConfig: {"zero_stage": "0..3", "reduce_bucket_size": ">= 1",
                      "stage3_prefetch_bucket_size": ">= 0",
                      "stage3_param_persistence_threshold": ">= 0", "autotp_size": ">= 1",
                      "steps_per_print": ">= 1"},
    SandboxConfig: {"cpu_time_s": ">= 1", "wall_time_s": "> 0", "memory_mb": ">= 1",
                    "max_output_bytes": ">= 1", "max_file_mb": ">= 0", "max_procs": ">= 1",
                    "workers": ">= 1", "uid_base": ">= 1"},
    EvalConfig: {"limit": ">= 1", "batch_size": ">= 1", "max_new_tokens": ">= 1",
                 "temperature": ">= 0", "num_samples": ">= 1", "tool_rounds": ">= 1",
                 "top_p": "(0, 1]", "max_prompt_tokens": ">= 1", "request_concurrency": ">= 1",
                 "tensor_parallel_size": ">= 1"},
    LoraConfig: {"r": ">= 1", "alpha": "> 0", "dropout": "[0, 1)"},
    InfluenceConfig: {"candidate_max": ">= 1", "warmup_fraction": "(0, 1]", "proj_dim": ">= 1",
                      "batch_size": ">= 1", "max_len": ">= 2", "target_max": ">= 1",
                      "top_k": ">= 1", "top_p": "(0, 1]", "shard": ">= 0",
                      "num_shards": ">= 1"},
    StageResources: {"nodes": ">= 1", "gpus_per_node": ">= 0", "tasks_per_node": ">= 1",
                     "cpus_per_task": ">= 1", "mem_gb": ">= 0", "timeout_min": ">= 1",
                     "array": ">= 1", "array_parallelism": ">= 1"},
    ModelConfig: {"vocab_size": ">= 1", "hidden_size": ">= 1", "intermediate_size": ">= 1",
                  "num_hidden_layers": ">= 1", "num_attention_heads": ">= 1",
                  "num_key_value_heads": ">= 1", "max_position_embeddings": ">= 1",
                  "rope_theta": "> 0", "rms_norm_eps": "> 0", "sliding_window": ">= 1",
                  "num_local_experts": ">= 0", "num_experts_per_tok": ">= 1",
                  "router_aux_loss_coef": ">= 0"},
    PipelineConfig: {"shard": ">= 0"},
    KDStage: {"count": ">= 0"},
    InfluenceStage: {"pool": ">= 0"},
    SynthesizeStage: {"shards": ">= 1"},
    LossEvalConfig: {"limit": ">= 1", "max_len": ">= 2", "batch_size": ">= 1",
                     "accuracy_limit": ">= 0"},
    SynthConfig: {"temperature": ">= 0", "top_p": "(0, 1]", "max_new_tokens": ">= 1",
                  "frequency_penalty": "[-2, 2]",
                  "tool_temperature": ">= 0", "tool_top_p": "(0, 1]",
                  "tool_max_new_tokens": ">= 1", "max_prompt_tokens": ">= 1",
                  "batch_size": ">= 1", "flush_every": ">= 1", "limit": ">= 1",
                  "tensor_parallel_size": ">= 1", "gpu_memory_utilization": "(0, 1]"},
    FilterConfig: {"min_problem_chars": ">= 0", "max_problem_chars": ">= 1",
                   "min_solution_chars": ">= 0", "max_solution_chars": ">= 1",
                   "minhash_threshold": "(0, 1]", "minhash_num_perm": ">= 1",
                   "minhash_shingle": ">= 1", "decontam_ngram": ">= 1",
                   "decontam_min_matches": ">= 1", "tool_timeout_s": "> 0",
                   "tool_workers": ">= 1", "workers": ">= 1"},
    BudgetConfig: {"max_calls": ">= 0", "max_tokens": ">= 0", "max_cost_usd": ">= 0",
                   "price_input_per_1m": ">= 0", "price_output_per_1m": ">= 0",
                   "chars_per_token": "> 0", "prompt_overhead_tokens": ">= 0"},
    TeacherConfig: {"concurrency": ">= 1", "max_retries": ">= 0", "timeout_s": "> 0",
                    "backoff_base_s": ">= 0", "backoff_max_s": ">= 0", "max_tokens": ">= 1",
                    "temperature": ">= 0", "top_p": "(0, 1]", "offline_top_k": ">= 1",
                    "offline_max_chars": ">= 1", "tool_temperature": ">= 0",
                    "tool_top_p": "(0, 1]", "tool_max_tokens": ">= 1",
                    "breaker_fatal_errors": ">= 0"},
    TrainerConfig: {"lr": ">= 0", "weight_decay": ">= 0", "eps": "> 0", "warmup_ratio": "[0, 1]",
                    "stable_ratio": "[0, 1]", "min_lr_ratio": "[0, 1]", "max_steps": ">= -1",
                    "epochs": "> 0", "global_batch_size": ">= 1", "micro_batch_size": ">= 1",
                    "grad_clip": ">= 0", "log_every": ">= 1", "peak_tflops": "> 0",
                    "save_every": ">= 0", "keep_last": ">= 0"},
}

# dataclass -> (smaller field, larger field): smaller <= larger when both are set
PAIRS: Dict[type, List[Tuple[str, str]]] = {
    SnippetConfig: [("min_size", "size")],
    FilterConfig: [("min_problem_chars", "max_problem_chars"),
                   ("min_solution_chars", "max_solution_chars")],
    TeacherConfig: [("backoff_base_s", "backoff_max_s")],
    InfluenceConfig: [("shard", "num_shards")],
    TrainerConfig: [("micro_batch_size", "global_batch_size")],
}


def _rules(cls: type) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for base in reversed(cls.__mro__):
        out.update(RULES.get(base, {}))
    return out


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_one(obj: Any, prefix: str) -> None:
    cls = type(obj)
    for name, rng in _rules(cls).items():
        v = getattr(obj, name, None)
        if v is None:
            continue
        test, text = _RANGES[rng]
        if not _number(v) or not test(v):
            raise ConfigValueError(f"{prefix}{name} must be {text}, got {v!r}")
    for base in cls.__mro__:
        for lo, hi in PAIRS.get(base, []):
            a, b = getattr(obj, lo, None), getattr(obj, hi, None)
            if a is None or b is None:
                continue
            if lo == "shard" and a >= b:  # a shard index is < the shard count
                raise ConfigValueError(f"{prefix}{lo} must be < {prefix}{hi} ({b}), got {a!r}")
            if a > b:
                raise ConfigValueError(f"{prefix}{lo} must be <= {prefix}{hi} ({b}), got {a!r}")


def check(cfg: Any, prefix: Optional[str] = "") -> None:
    """Range-check `cfg` and every dataclass below it (lists and dicts included); errors name
    the key as `prefix` + dotted path (`prefix` "" for the root, e.g. "stages.kd_seed")."""
    pre = f"{prefix}." if prefix and not prefix.endswith(".") else (prefix or "")
    _walk(cfg, pre)


def _walk(obj: Any, pre: str) -> None:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        _check_one(obj, pre)
        for f in dataclasses.fields(obj):
            _walk(getattr(obj, f.name), f"{pre}{f.name}.")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _walk(v, f"{pre[:-1]}[{i}].")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _walk(v, f"{pre}{k}.")


def check_stages(cfg: Any, names: Sequence[str]) -> None:
    """What the selected stages need before the first of them runs (the range checks above
    have run on the whole config already): a teacher stage's count, endpoint, API key and
    budget. Raises `ConfigValueError` naming the full key, e.g.
    `stages.kd_seed.teacher.base_url is required for teacher.kind=openai`."""
    stages = getattr(cfg, "stages", None)
    for name in names:
        sec = getattr(stages, name, None)
        if isinstance(sec, KDStage) and not sec.from_file:
            _check_kd(sec, f"stages.{name}.")


def _check_kd(sec: KDStage, pre: str) -> None:
    if sec.count < 1:
        raise ConfigValueError(f"{pre}count must be >= 1 for a stage that asks the teacher, got "
                               f"{sec.count} (or set {pre}from_file to import a KD set)")
    t, tp = sec.teacher, f"{pre}teacher."
    if t.kind != TeacherKind.openai:
        return
    if not t.base_url:
        raise ConfigValueError(f"{tp}base_url is required for teacher.kind=openai (e.g. "
                               f"{tp}base_url=http://host:8000/v1)")
    if not t.base_url.startswith(("http://", "https://")):
        raise ConfigValueError(f"{tp}base_url must start with http:// or https://, got "
                               f"{t.base_url!r}")
    if not t.api_key and not os.environ.get(t.api_key_env or ""):
        raise ConfigValueError(f"{tp}api_key is not set and the environment variable "
                               f"{t.api_key_env or '(teacher.api_key_env unset)'} is empty "
                               f"(a server that needs no key: {tp}api_key=EMPTY)")
    for limit in ("max_calls", "max_tokens", "max_cost_usd"):
        if getattr(t.budget, limit) <= 0:
            raise ConfigValueError(f"{tp}budget.{limit} must be > 0 for a paid teacher, got "
                                   f"{getattr(t.budget, limit)!r}")
