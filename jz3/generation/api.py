"""The one generation interface: requests in, results out, each request sampled on its own seed.

`Generator.generate(requests) -> results` is what every backend (HF, vLLM, OpenAI-compatible)
implements. `complete(...)` / `TextGenerator` are the text-level view used by evaluation and the
tool loop: `n` completions per prompt, each its own seeded request.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum
from typing import List, Optional, Protocol, Sequence, Tuple


class FinishReason(str, Enum):
    stop = "stop"  # end of sequence or a stop string
    length = "length"  # hit max_new_tokens
    error = "error"  # the request could not run (`GenResult.error` says why)


@dataclass(frozen=True)
class GenRequest:
    """One prompt to continue; `seed` makes its sampling reproducible on its own (any batch,
    any machine). `stop`: the completion ends before the first of these strings."""

    id: str
    prompt: str
    temperature: float = 0.0  # <= 0: greedy
    top_p: float = 1.0
    max_new_tokens: int = 512
    seed: int = 0
    stop: Tuple[str, ...] = ()
    # OpenAI/vLLM semantics: each generated token's logit is lowered by this much times the
    # number of times it already occurs in the completion (prompt tokens do not count)
    frequency_penalty: float = 0.0


@dataclass
class GenResult:
    id: str
    completion: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # a FinishReason value
    error: Optional[str] = None  # set when this request could not be run (e.g. prompt too long)


class Generator(Protocol):
    """A backend; results come back in the order of `requests`."""

    name: str
    model_name: str

    def generate(self, requests: Sequence[GenRequest]) -> List[GenResult]: ...


def record_seed(base_seed: int, key: str) -> int:
    """A stable 63-bit seed for one record (same on every machine and rerun)."""
    digest = hashlib.sha256(f"{base_seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def cut_at_stop(text: str, stops: Sequence[str]) -> Tuple[str, bool]:
    """`text` up to (not including) the first stop string, and whether one was found."""
    cut = len(text)
    for s in stops:
        i = text.find(s) if s else -1
        if 0 <= i < cut:
            cut = i
    return text[:cut], cut < len(text)


def encode_prompt(tok, prompt: str, chat_template: bool = False) -> List[int]:
    """Token ids of a prompt, the same for every local backend: BOS + text (no other special
    tokens), or the tokenizer's chat template rendering `prompt` as one user turn."""
    if chat_template:
        ids = tok.apply_chat_template([{"role": "user", "content": prompt}],
                                      add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    bos = tok.bos_token_id
    return ([bos] if bos is not None else []) + list(ids)


@dataclass(frozen=True)
class GenParams:
    """Sampling for the text-level API (`complete`)."""

    max_new_tokens: int = 512
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    n: int = 1
    seed: int = 0


def complete(gen: Generator, prompts: Sequence[str], stops: Sequence[str],
             params: GenParams) -> List[List[str]]:
    """`params.n` completions per prompt. Sample k of a prompt is seeded by (seed, k, prompt), so
    its text does not depend on batching or on the other prompts. A request that could not run
    raises (evaluation must not grade an error as a wrong answer)."""
    reqs = [GenRequest(id=f"{i}:{k}", prompt=p, temperature=params.temperature,
                       top_p=params.top_p if params.temperature > 0 else 1.0,
                       max_new_tokens=params.max_new_tokens,
                       seed=record_seed(params.seed, f"{k}:{p}"), stop=tuple(stops))
            for i, p in enumerate(prompts) for k in range(max(1, params.n))]
    results = gen.generate(reqs)
    out: List[List[str]] = [[] for _ in prompts]
    for req, res in zip(reqs, results, strict=True):
        if res.error:
            raise RuntimeError(f"generation failed for prompt {req.id.split(':')[0]}: {res.error}")
        out[int(req.id.split(":")[0])].append(res.completion)
    return out


class TextGenerator(Protocol):
    """The text-level view (`generate(prompts, stops, params) -> n texts per prompt`)."""

    def generate(self, prompts: Sequence[str], stops: Sequence[str],
                 params: GenParams) -> List[List[str]]: ...


class TextAdapter:
    """A `Generator` seen as a `TextGenerator` (what the tool loop drives)."""

    def __init__(self, gen: Generator) -> None:
        self.gen = gen

    def generate(self, prompts: Sequence[str], stops: Sequence[str],
                 params: GenParams) -> List[List[str]]:
        return complete(self.gen, prompts, stops, params)
