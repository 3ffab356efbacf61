"""HF transformers backend: our own batched decode loop (KV cache, left padding, per-row seeds,
stop strings).

Prompts are sorted by length and run in batches of `batch_size`; rows that reach end-of-sequence,
a stop string or their token budget leave the batch (their KV-cache rows are dropped), so a batch
costs what its longest survivor costs, not batch_size times that.
"""

from __future__ import annotations

import inspect
import logging
from typing import List, Optional, Sequence, Tuple

import torch
from transformers import DynamicCache

from jz3.generation.api import FinishReason, GenRequest, GenResult, cut_at_stop, encode_prompt
from jz3.generation.sampling import row_uniforms, sample_next

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class HFGenerator:
    """`Generator` over an in-memory HF causal LM and its tokenizer.

    `truncate_left`: a prompt longer than `max_prompt_tokens` keeps its last tokens (evaluation:
    few-shot exemplars go first) instead of failing with `prompt_too_long` (synthesis).
    `chat_template`: render each prompt as one user turn through the tokenizer's template.
    """

    name = "hf"

    def __init__(self, model, tokenizer, batch_size: int = 16, max_prompt_tokens: int = 4096,
                 model_name: str = "model", truncate_left: bool = False,
                 chat_template: bool = False):
        self.model = model.eval()
        self.tok = tokenizer
        self.batch_size = batch_size
        self.max_prompt_tokens = max_prompt_tokens
        self.model_name = model_name
        self.truncate_left = truncate_left
        self.chat_template = chat_template
        self.device = next(model.parameters()).device
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        params = inspect.signature(model.forward).parameters  # transformers >= 5.2x: `cache`
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    def encode(self, prompt: str) -> List[int]:
        """Token ids of a prompt: BOS + text, or the chat template's rendering of one user turn."""
        return encode_prompt(self.tok, prompt, self.chat_template)

    def generate(self, requests: Sequence[GenRequest]) -> List[GenResult]:
        results: List[Optional[GenResult]] = [None] * len(requests)
        encoded: List[Tuple[int, List[int]]] = []
        for i, r in enumerate(requests):
            ids = self.encode(r.prompt)
            if len(ids) > self.max_prompt_tokens and self.truncate_left:
                ids = ids[-self.max_prompt_tokens:]
            if r.max_new_tokens <= 0:
                results[i] = GenResult(r.id, "", len(ids), 0, FinishReason.length.value)
            elif len(ids) > self.max_prompt_tokens:
                results[i] = GenResult(r.id, "", len(ids), 0, FinishReason.error.value,
                                       error=f"prompt_too_long: {len(ids)} tokens > "
                                             f"max_prompt_tokens={self.max_prompt_tokens}")
            else:
                encoded.append((i, ids))
        encoded.sort(key=lambda x: len(x[1]))
        for start in range(0, len(encoded), self.batch_size):
            chunk = encoded[start:start + self.batch_size]
            outs = self.generate_batch([requests[i] for i, _ in chunk], [ids for _, ids in chunk])
            for (i, ids), (toks, finish) in zip(chunk, outs, strict=True):
                text, stopped = cut_at_stop(self.tok.decode(toks, skip_special_tokens=True),
                                            requests[i].stop)
                if stopped:
                    finish = FinishReason.stop.value
                results[i] = GenResult(requests[i].id, text, len(ids), len(toks), finish)
        return [r for r in results if r is not None]

    def _hit_stop(self, toks: List[int], stops: Sequence[str]) -> bool:
        """Does the tail of the generated text contain a stop string? (decodes only the last
        few tokens: a token is at least one character for the tokenizers we use)."""
        window = max(len(s) for s in stops) + 2
        tail = self.tok.decode(toks[-window:], skip_special_tokens=True)
        return any(s in tail for s in stops)

    @torch.inference_mode()
    def generate_batch(self, reqs: List[GenRequest],
                       prompts: List[List[int]]) -> List[Tuple[List[int], str]]:
        """Sample continuations of token-id prompts; returns (new token ids, finish reason)."""
        dev = self.device
        b, width = len(prompts), max(len(p) for p in prompts)
        input_ids = torch.full((b, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((b, width), dtype=torch.long)
        for row, p in enumerate(prompts):
            input_ids[row, width - len(p):] = torch.tensor(p)
            mask[row, width - len(p):] = 1
        input_ids, mask = input_ids.to(dev), mask.to(dev)
        gens = [torch.Generator().manual_seed(r.seed) for r in reqs]
        temp = torch.tensor([r.temperature for r in reqs], device=dev)
        top_p = torch.tensor([r.top_p for r in reqs], device=dev)
        penalty = torch.tensor([r.frequency_penalty for r in reqs], device=dev)
        use_penalty = bool((penalty != 0).any())
        counts = None  # [alive rows, vocab] occurrences of each token in the completion so far
        out: List[List[int]] = [[] for _ in reqs]
        finish = [FinishReason.length.value] * b
        alive = torch.arange(b, device=dev)  # original row of each batch row
        alive_list = list(range(b))
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        kw = {self._cache_kw: cache}
        logits = self.model(input_ids=input_ids, attention_mask=mask, position_ids=pos,
                            use_cache=True, logits_to_keep=1, **kw).logits[:, -1]
        next_pos = pos[:, -1] + 1
        step = 0
        while alive_list:
            u = row_uniforms([gens[i] for i in alive_list], dev)
            if use_penalty:
                if counts is None:
                    counts = torch.zeros(logits.shape, device=dev)
                logits = logits.float() - penalty[alive].unsqueeze(1) * counts
            tok = sample_next(logits, temp[alive], top_p[alive], u)
            if use_penalty:
                counts[torch.arange(len(alive_list), device=dev), tok] += 1
            step += 1
            keep: List[int] = []
            for k, (row, t) in enumerate(zip(alive_list, tok.tolist(), strict=True)):
                if t == self.eos_id:
                    finish[row] = FinishReason.stop.value
                    continue
                out[row].append(t)
                if reqs[row].stop and self._hit_stop(out[row], reqs[row].stop):
                    finish[row] = FinishReason.stop.value
                    continue
                if step < reqs[row].max_new_tokens:
                    keep.append(k)
            if len(keep) < len(alive_list):
                if not keep:
                    break
                idx = torch.tensor(keep, device=dev)
                cache.batch_select_indices(idx)
                mask, next_pos, alive, tok = mask[idx], next_pos[idx], alive[idx], tok[idx]
                if counts is not None:
                    counts = counts[idx]
                alive_list = [alive_list[k] for k in keep]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            logits = self.model(input_ids=tok.unsqueeze(1), attention_mask=mask,
                                position_ids=next_pos.unsqueeze(1), use_cache=True,
                                **kw).logits[:, -1]
            next_pos = next_pos + 1
        return [(out[i], finish[i]) for i in range(b)]
