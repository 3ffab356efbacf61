"""Any OpenAI-compatible `/v1/completions` endpoint (vLLM server, TGI, ...): one call per request,
run `concurrency` at a time."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence

from jz3.generation.api import FinishReason, GenRequest, GenResult, cut_at_stop


class OpenAIGenerator:
    name = "openai"

    def __init__(self, model: str, base_url: Optional[str], api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8):
        import openai

        self.client = openai.OpenAI(base_url=base_url,
                                    api_key=os.environ.get(api_key_env, "EMPTY"))
        self.model_name = model
        self.concurrency = concurrency

    def _one(self, r: GenRequest) -> GenResult:
        resp = self.client.completions.create(
            model=self.model_name, prompt=r.prompt, max_tokens=r.max_new_tokens,
            temperature=max(r.temperature, 0.0), top_p=r.top_p, n=1,
            stop=list(r.stop)[:4] or None, seed=r.seed % (2**31),
            frequency_penalty=r.frequency_penalty)
        c = resp.choices[0]
        text, stopped = cut_at_stop(c.text, r.stop)
        usage = resp.usage
        finish = FinishReason.length if c.finish_reason == "length" and not stopped \
            else FinishReason.stop
        return GenResult(r.id, text, usage.prompt_tokens if usage else 0,
                         usage.completion_tokens if usage else 0, finish.value)

    def generate(self, requests: Sequence[GenRequest]) -> List[GenResult]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as ex:
            return list(ex.map(self._one, requests))
