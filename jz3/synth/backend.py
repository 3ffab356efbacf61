"""The generation interface every synthesizer backend implements, and the backend factory."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import List, Optional, Protocol

from jz3.config.enums import GenBackend
from jz3.config.synth import SynthConfig


@dataclass
class GenRequest:
    """One prompt to continue; `seed` makes its sampling reproducible on its own."""

    id: str
    prompt: str
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int


@dataclass
class GenResult:
    id: str
    completion: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of sequence) or "length" (hit max_new_tokens)
    error: Optional[str] = None  # set when this request could not be run (e.g. prompt too long)


class Generator(Protocol):
    name: str

    def generate(self, requests: List[GenRequest]) -> List[GenResult]:
        """Results in the order of `requests`."""
        ...


def record_seed(base_seed: int, key: str) -> int:
    """A stable 63-bit seed for one record (same on every machine and rerun)."""
    digest = hashlib.sha256(f"{base_seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def make_generator(cfg: SynthConfig, tokenizer_fallback=None) -> Generator:
    """The backend named by `cfg.backend`, loaded from `cfg.model_path`."""
    if not cfg.model_path:
        raise ValueError("synth.model_path: no synthesizer given (an HF model folder)")
    if cfg.backend == GenBackend.hf:
        from jz3.synth.hf_backend import HFGenerator

        return HFGenerator.from_pretrained(cfg, tokenizer_fallback=tokenizer_fallback)
    if cfg.backend == GenBackend.vllm:
        from jz3.synth.vllm_backend import VLLMGenerator

        return VLLMGenerator(cfg)
    raise ValueError(f"synth.backend: {cfg.backend.value!r} cannot run a local synthesizer "
                     "(use hf or vllm)")
