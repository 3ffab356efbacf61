"""vLLM backend (GPU): continuous batching with one seeded SamplingParams per request."""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence

from jz3.generation.api import FinishReason, GenRequest, GenResult, cut_at_stop

log = logging.getLogger(__name__)


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


def visible_gpus() -> int:
    """GPUs this process sees (CUDA_VISIBLE_DEVICES applied); 0 without CUDA."""
    import torch

    return torch.cuda.device_count()


class VLLMGenerator:
    name = "vllm"

    def __init__(self, model_path: str, tokenizer_path: Optional[str] = None, *,
                 dtype: str = "bfloat16", seed: int = 0, tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9, max_prompt_tokens: int = 4096,
                 max_new_tokens: int = 2048, truncate_left: bool = False,
                 chat_template: bool = False, config_key: str = "backend"):
        if not vllm_available():
            raise ImportError(f"{config_key}=vllm but vllm is not installed "
                              "(pip install 'jz3[gpu]'), or use the hf backend")
        from vllm import LLM

        self.model_name = str(model_path)
        self.llm = LLM(model=str(model_path), tokenizer=tokenizer_path or str(model_path),
                       tensor_parallel_size=tensor_parallel_size,
                       gpu_memory_utilization=gpu_memory_utilization, dtype=dtype, seed=seed,
                       max_model_len=max_prompt_tokens + max_new_tokens)
        self.max_prompt_tokens = max_prompt_tokens
        self.truncate_left = truncate_left
        self.chat_template = chat_template
        self.tok = self.llm.get_tokenizer()

    def encode(self, prompt: str) -> List[int]:
        if self.chat_template:
            return list(self.tok.apply_chat_template([{"role": "user", "content": prompt}],
                                                     add_generation_prompt=True, tokenize=True))
        return list(self.tok(prompt)["input_ids"])

    def generate(self, requests: Sequence[GenRequest]) -> List[GenResult]:
        from vllm import SamplingParams

        results: Dict[str, GenResult] = {}
        todo, token_prompts = [], []
        for r in requests:
            ids = self.encode(r.prompt)
            if len(ids) > self.max_prompt_tokens and self.truncate_left:
                ids = ids[-self.max_prompt_tokens:]
            if len(ids) > self.max_prompt_tokens:
                results[r.id] = GenResult(r.id, "", len(ids), 0, FinishReason.error.value, error=(
                    f"prompt_too_long: {len(ids)} tokens > "
                    f"max_prompt_tokens={self.max_prompt_tokens}"))
            else:
                todo.append(r)
                token_prompts.append({"prompt_token_ids": ids})
        params = [SamplingParams(temperature=max(r.temperature, 0.0),
                                 top_p=r.top_p if r.temperature > 0 else 1.0,
                                 max_tokens=r.max_new_tokens, seed=r.seed % (2**31),
                                 frequency_penalty=r.frequency_penalty,
                                 stop=list(r.stop) or None)
                  for r in todo]
        outs = self.llm.generate(token_prompts, params, use_tqdm=False) if todo else []
        for r, o in zip(todo, outs, strict=True):
            c = o.outputs[0]
            text, stopped = cut_at_stop(c.text, r.stop)
            finish = FinishReason.length if c.finish_reason == "length" and not stopped \
                else FinishReason.stop
            results[r.id] = GenResult(r.id, text, len(o.prompt_token_ids), len(c.token_ids),
                                      finish.value)
        return [results[r.id] for r in requests]
