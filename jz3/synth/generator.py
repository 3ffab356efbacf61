"""The synthesizer as a `jz3.generation.Generator`, from the synth config section."""

from __future__ import annotations

from typing import Callable, Optional

from jz3.config.synth import SynthConfig
from jz3.generation import BackendSpec, Generator
from jz3.generation import make_generator as _make


def backend_spec(cfg: SynthConfig) -> BackendSpec:
    """Synthesis runs prompts as raw text and records over-long prompts as failures."""
    if cfg.backend.value == "openai":
        raise ValueError("synth.backend: 'openai' cannot run a local synthesizer (use hf or vllm)")
    return BackendSpec(backend=cfg.backend, model_path=cfg.model_path,
                       tokenizer_path=cfg.tokenizer_path, device=cfg.device,
                       precision=cfg.precision, batch_size=cfg.batch_size,
                       max_prompt_tokens=cfg.max_prompt_tokens,
                       max_new_tokens=cfg.max_new_tokens, truncate_left=False,
                       tensor_parallel_size=cfg.tensor_parallel_size,
                       gpu_memory_utilization=cfg.gpu_memory_utilization, seed=cfg.seed,
                       config_key="synth")


def make_generator(cfg: SynthConfig,
                   tokenizer_fallback: Optional[Callable[[], object]] = None) -> Generator:
    """The backend `synth.backend` names, loaded from `synth.model_path`."""
    return _make(backend_spec(cfg), tokenizer_fallback)
