"""Generation backends: HF transformers (batched, left padding, CPU/GPU), vLLM when installed,
and any OpenAI-compatible completions endpoint. All return `n` completions per prompt, each cut
at the first stop string (the stop string itself is not included)."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import List, Optional, Protocol, Sequence

from jz3.config.enums import GenBackend
from jz3.config.eval import EvalConfig

log = logging.getLogger(__name__)


@dataclass
class GenParams:
    max_new_tokens: int = 512
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    n: int = 1
    seed: int = 0


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if i >= 0:
            cut = min(cut, i)
    return text[:cut]


class Generator(Protocol):
    def generate(self, prompts: Sequence[str], stops: Sequence[str],
                 params: GenParams) -> List[List[str]]: ...


def _stop_criteria(tok, stops: Sequence[str], prompt_len: int):
    """Per-sequence stop when the text generated so far contains a stop string (decodes only
    the last few tokens each step; transformers' `stop_strings` re-scans the vocabulary)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    window = max(len(s) for s in stops) + 8

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):  # noqa: ANN001
            new = input_ids[:, prompt_len:]
            tails = tok.batch_decode(new[:, -window:], skip_special_tokens=True)
            return torch.tensor([any(s in t for s in stops) for t in tails],
                                dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_Stop()])


class HFGenerator:
    """`model.generate` over length-sorted batches with left padding."""

    def __init__(self, model_path: str, tokenizer_path: Optional[str] = None,
                 batch_size: int = 8, device: str = "auto", dtype: str = "auto",
                 max_prompt_tokens: int = 3072):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        if dtype == "auto":
            torch_dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        else:
            torch_dtype = getattr(torch, dtype)
        self.tok = AutoTokenizer.from_pretrained(tokenizer_path or model_path, local_files_only=True)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=torch_dtype, local_files_only=True).to(self.device).eval()
        self.batch_size = batch_size
        self.max_prompt_tokens = max_prompt_tokens

    def generate(self, prompts: Sequence[str], stops: Sequence[str],
                 params: GenParams) -> List[List[str]]:
        import torch

        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        out: List[List[str]] = [[] for _ in prompts]
        torch.manual_seed(params.seed)
        sample = params.temperature > 0
        for start in range(0, len(order), self.batch_size):
            idx = order[start: start + self.batch_size]
            self.tok.truncation_side = "left"
            enc = self.tok([prompts[i] for i in idx], return_tensors="pt", padding=True,
                           truncation=True, max_length=self.max_prompt_tokens,
                           add_special_tokens=True).to(self.device)
            kwargs = dict(max_new_tokens=params.max_new_tokens, do_sample=sample,
                          num_return_sequences=params.n, pad_token_id=self.tok.pad_token_id)
            if sample:
                kwargs.update(temperature=params.temperature, top_p=params.top_p)
            else:
                kwargs.update(temperature=None, top_p=None, top_k=None)
            if stops:
                kwargs["stopping_criteria"] = _stop_criteria(self.tok, stops,
                                                             enc["input_ids"].shape[1])
            with torch.inference_mode():
                gen = self.model.generate(**enc, **kwargs)
            new = gen[:, enc["input_ids"].shape[1]:]
            texts = self.tok.batch_decode(new, skip_special_tokens=True)
            for j, i in enumerate(idx):
                out[i] = [cut_at_stop(t, stops) for t in texts[j * params.n: (j + 1) * params.n]]
        return out


class VLLMGenerator:
    """vLLM offline engine (GPU); imported only when this backend is chosen."""

    def __init__(self, model_path: str, tokenizer_path: Optional[str] = None, seed: int = 0):
        from vllm import LLM  # noqa: PLC0415 - optional dependency

        self.llm = LLM(model=model_path, tokenizer=tokenizer_path or model_path, seed=seed,
                       trust_remote_code=False)

    def generate(self, prompts: Sequence[str], stops: Sequence[str],
                 params: GenParams) -> List[List[str]]:
        from vllm import SamplingParams

        sp = SamplingParams(n=params.n, temperature=params.temperature, top_p=params.top_p,
                            max_tokens=params.max_new_tokens, stop=list(stops), seed=params.seed)
        results = self.llm.generate(list(prompts), sp)
        return [[cut_at_stop(o.text, stops) for o in r.outputs] for r in results]


class OpenAIGenerator:
    """Any OpenAI-compatible `/v1/completions` endpoint (vLLM server, TGI, ...)."""

    def __init__(self, model: str, base_url: Optional[str], api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8):
        import openai

        self.client = openai.OpenAI(base_url=base_url,
                                    api_key=os.environ.get(api_key_env, "EMPTY"))
        self.model = model
        self.concurrency = concurrency

    def _one(self, prompt: str, stops: Sequence[str], params: GenParams) -> List[str]:
        resp = self.client.completions.create(
            model=self.model, prompt=prompt, max_tokens=params.max_new_tokens,
            temperature=params.temperature, top_p=params.top_p, n=params.n,
            stop=list(stops)[:4] or None, seed=params.seed)
        choices = sorted(resp.choices, key=lambda c: c.index)
        return [cut_at_stop(c.text, stops) for c in choices]

    def generate(self, prompts: Sequence[str], stops: Sequence[str],
                 params: GenParams) -> List[List[str]]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as ex:
            return list(ex.map(lambda p: self._one(p, stops, params), prompts))


def make_generator(cfg: EvalConfig) -> Generator:
    if not cfg.model_path:
        raise ValueError("eval.model_path is not set (an HF folder, or the model name for openai)")
    if cfg.backend == GenBackend.hf:
        return HFGenerator(cfg.model_path, cfg.tokenizer_path, cfg.batch_size, cfg.device,
                           cfg.dtype, cfg.max_prompt_tokens)
    if cfg.backend == GenBackend.vllm:
        return VLLMGenerator(cfg.model_path, cfg.tokenizer_path, cfg.seed)
    if cfg.backend == GenBackend.openai:
        return OpenAIGenerator(cfg.model_path, cfg.base_url, cfg.api_key_env,
                               cfg.request_concurrency)
    raise ValueError(f"unknown backend {cfg.backend}")
