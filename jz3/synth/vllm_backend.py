"""vLLM backend (GPU): continuous batching with one seeded SamplingParams per request."""

from __future__ import annotations

import logging
from typing import List

from jz3.config.enums import Precision
from jz3.config.synth import SynthConfig
from jz3.synth.backend import GenRequest, GenResult

log = logging.getLogger(__name__)
VLLM_DTYPES = {Precision.bf16: "bfloat16", Precision.fp16: "float16", Precision.fp32: "float32"}


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


class VLLMGenerator:
    name = "vllm"

    def __init__(self, cfg: SynthConfig):
        if not vllm_available():
            raise ImportError("synth.backend=vllm but vllm is not installed "
                              "(pip install 'jz3[gpu]'), or use synth.backend=hf")
        from vllm import LLM

        self.model_name = str(cfg.model_path)
        self.llm = LLM(model=str(cfg.model_path), tokenizer=cfg.tokenizer_path,
                       tensor_parallel_size=cfg.tensor_parallel_size,
                       gpu_memory_utilization=cfg.gpu_memory_utilization,
                       dtype=VLLM_DTYPES[cfg.precision], seed=cfg.seed,
                       max_model_len=cfg.max_prompt_tokens + cfg.max_new_tokens)
        self.max_prompt_tokens = cfg.max_prompt_tokens
        self.tok = self.llm.get_tokenizer()

    def generate(self, requests: List[GenRequest]) -> List[GenResult]:
        from vllm import SamplingParams

        results: dict = {}
        todo = []
        for r in requests:
            n = len(self.tok(r.prompt)["input_ids"])
            if n > self.max_prompt_tokens:
                results[r.id] = GenResult(r.id, "", n, 0, "error", error=(
                    f"prompt_too_long: {n} tokens > max_prompt_tokens={self.max_prompt_tokens}"))
            else:
                todo.append(r)
        params = [SamplingParams(temperature=r.temperature, top_p=r.top_p,
                                 max_tokens=r.max_new_tokens, seed=r.seed % (2**31))
                  for r in todo]
        outs = self.llm.generate([r.prompt for r in todo], params, use_tqdm=False)
        for r, o in zip(todo, outs, strict=True):
            c = o.outputs[0]
            results[r.id] = GenResult(r.id, c.text, len(o.prompt_token_ids), len(c.token_ids),
                                      "length" if c.finish_reason == "length" else "stop")
        return [results[r.id] for r in requests]
