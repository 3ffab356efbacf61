"""`BackendSpec` (what to load, where, how) and `make_generator(spec)`; synthesis and evaluation
each build a spec from their own config section."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from jz3.config.enums import GenBackend, Precision
from jz3.generation.api import Generator

log = logging.getLogger(__name__)
VLLM_DTYPES = {Precision.bf16: "bfloat16", Precision.fp16: "float16", Precision.fp32: "float32"}


@dataclass
class BackendSpec:
    """Everything a backend needs; `config_key` names the config section in error messages."""

    backend: GenBackend
    model_path: Optional[str]
    tokenizer_path: Optional[str] = None  # default: the model folder
    device: str = "auto"  # auto = cuda when available, else cpu
    precision: Optional[Precision] = None  # None: bf16 on GPU, fp32 on CPU
    batch_size: int = 8
    max_prompt_tokens: int = 4096
    max_new_tokens: int = 2048  # vLLM: max_model_len = prompt + new tokens
    truncate_left: bool = False  # over-long prompts keep their tail instead of failing
    chat_template: bool = False  # one user turn through the tokenizer's template, if it has one
    tensor_parallel_size: int = 1  # vLLM
    gpu_memory_utilization: float = 0.9  # vLLM
    seed: int = 0
    base_url: Optional[str] = None  # openai
    api_key_env: str = "OPENAI_API_KEY"  # openai
    concurrency: int = 8  # openai
    config_key: str = "generation"


def _has_template(tok) -> bool:
    return bool(getattr(tok, "chat_template", None))


def load_hf(spec: BackendSpec, tokenizer_fallback: Optional[Callable[[], object]] = None):
    """An `HFGenerator` for an HF model folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jz3.generation.hf import HFGenerator, resolve_device

    path = Path(spec.model_path or "")
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{spec.config_key}.model_path: no HF model folder at {path} "
                                "(config.json missing)")
    device = resolve_device(spec.device)
    precision = spec.precision or (Precision.bf16 if device.type == "cuda" else Precision.fp32)
    dtype = {Precision.fp32: torch.float32, Precision.bf16: torch.bfloat16,
             Precision.fp16: torch.float16}[precision]
    # A ZeRO-3 training earlier in this process leaves transformers' DeepSpeed config set, which
    # would build this inference model partitioned (empty weights): generation never uses ZeRO-3.
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype,
                                                 local_files_only=True).to(device)
    tok_src = spec.tokenizer_path or str(path)
    try:
        tok = AutoTokenizer.from_pretrained(tok_src, local_files_only=True)
    except (OSError, ValueError):
        if tokenizer_fallback is None:
            raise FileNotFoundError(f"{spec.config_key}.tokenizer_path: no tokenizer in "
                                    f"{tok_src}") from None
        tok = tokenizer_fallback()
    chat = spec.chat_template and _has_template(tok)
    log.info("HF generator %s on %s (%s), batch %d%s", path, device, precision.value,
             spec.batch_size, ", chat template" if chat else "")
    return HFGenerator(model, tok, spec.batch_size, spec.max_prompt_tokens, model_name=path.name,
                       truncate_left=spec.truncate_left, chat_template=chat)


def make_generator(spec: BackendSpec,
                   tokenizer_fallback: Optional[Callable[[], object]] = None) -> Generator:
    """The backend `spec.backend` names, loaded from `spec.model_path`."""
    if not spec.model_path:
        raise ValueError(f"{spec.config_key}.model_path is not set (an HF model folder, or the "
                         "served model name for the openai backend)")
    if spec.backend == GenBackend.hf:
        return load_hf(spec, tokenizer_fallback)
    if spec.backend == GenBackend.vllm:
        from jz3.generation.vllm import VLLMGenerator

        gen = VLLMGenerator(spec.model_path, spec.tokenizer_path,
                            dtype=VLLM_DTYPES[spec.precision] if spec.precision else None,
                            seed=spec.seed,
                            tensor_parallel_size=spec.tensor_parallel_size,
                            gpu_memory_utilization=spec.gpu_memory_utilization,
                            max_prompt_tokens=spec.max_prompt_tokens,
                            max_new_tokens=spec.max_new_tokens, truncate_left=spec.truncate_left,
                            config_key=f"{spec.config_key}.backend")
        gen.chat_template = spec.chat_template and _has_template(gen.tok)
        return gen
    if spec.backend == GenBackend.openai:
        from jz3.generation.openai_compat import OpenAIGenerator

        return OpenAIGenerator(spec.model_path, spec.base_url, spec.api_key_env, spec.concurrency)
    raise ValueError(f"{spec.config_key}.backend: unknown backend {spec.backend!r}")
