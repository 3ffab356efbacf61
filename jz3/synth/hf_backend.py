"""HF transformers backend: our own batched decode loop (KV cache, left padding, per-row seeds).

Prompts are sorted by length and run in batches of `batch_size`; rows that reach end-of-sequence
or their token budget leave the batch (their KV-cache rows are dropped), so a batch costs what
its longest survivor costs, not batch_size times that.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import List, Optional, Tuple

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from jz3.config.enums import Precision
from jz3.config.synth import SynthConfig
from jz3.synth.backend import GenRequest, GenResult
from jz3.synth.sampling import row_uniforms, sample_next

log = logging.getLogger(__name__)
DTYPES = {Precision.fp32: torch.float32, Precision.bf16: torch.bfloat16,
          Precision.fp16: torch.float16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class HFGenerator:
    name = "hf"

    def __init__(self, model, tokenizer, batch_size: int = 16, max_prompt_tokens: int = 4096,
                 model_name: str = "synthesizer"):
        self.model = model.eval()
        self.tok = tokenizer
        self.batch_size = batch_size
        self.max_prompt_tokens = max_prompt_tokens
        self.model_name = model_name
        self.device = next(model.parameters()).device
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        params = inspect.signature(model.forward).parameters  # transformers >= 5.2x: `cache`
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    @classmethod
    def from_pretrained(cls, cfg: SynthConfig, tokenizer_fallback=None) -> HFGenerator:
        path = Path(cfg.model_path or "")
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"synth.model_path: no HF model folder at {path} "
                                    "(config.json missing)")
        device = resolve_device(cfg.device)
        dtype = DTYPES[cfg.precision]
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype,
                                                     local_files_only=True).to(device)
        tok_src = cfg.tokenizer_path or str(path)
        try:
            tok = AutoTokenizer.from_pretrained(tok_src, local_files_only=True)
        except (OSError, ValueError):
            if tokenizer_fallback is None:
                raise FileNotFoundError(f"synth.tokenizer_path: no tokenizer in {tok_src}") from None
            tok = tokenizer_fallback()
        log.info("HF synthesizer %s on %s (%s), batch %d", path, device, dtype, cfg.batch_size)
        return cls(model, tok, cfg.batch_size, cfg.max_prompt_tokens, model_name=path.name)

    def encode(self, prompt: str) -> List[int]:
        ids = self.tok(prompt, add_special_tokens=False)["input_ids"]
        bos = self.tok.bos_token_id
        return ([bos] if bos is not None else []) + list(ids)

    def generate(self, requests: List[GenRequest]) -> List[GenResult]:
        results: List[Optional[GenResult]] = [None] * len(requests)
        encoded: List[Tuple[int, List[int]]] = []
        for i, r in enumerate(requests):
            ids = self.encode(r.prompt)
            if r.max_new_tokens <= 0:
                results[i] = GenResult(r.id, "", len(ids), 0, "length")
            elif len(ids) > self.max_prompt_tokens:
                results[i] = GenResult(r.id, "", len(ids), 0, "error",
                                       error=f"prompt_too_long: {len(ids)} tokens > "
                                             f"max_prompt_tokens={self.max_prompt_tokens}")
            else:
                encoded.append((i, ids))
        encoded.sort(key=lambda x: len(x[1]))
        for start in range(0, len(encoded), self.batch_size):
            chunk = encoded[start:start + self.batch_size]
            outs = self.generate_batch([requests[i] for i, _ in chunk], [ids for _, ids in chunk])
            for (i, ids), (toks, finish) in zip(chunk, outs, strict=True):
                text = self.tok.decode(toks, skip_special_tokens=True)
                results[i] = GenResult(requests[i].id, text, len(ids), len(toks), finish)
        return [r for r in results if r is not None]

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
        out: List[List[int]] = [[] for _ in reqs]
        finish = ["length"] * b
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
            tok = sample_next(logits, temp[alive], top_p[alive], u)
            step += 1
            tok_list = tok.tolist()
            keep: List[int] = []
            for k, (row, t) in enumerate(zip(alive_list, tok_list, strict=True)):
                if t == self.eos_id:
                    finish[row] = "stop"
                    continue
                out[row].append(t)
                if step < reqs[row].max_new_tokens:
                    keep.append(k)
            if len(keep) < len(alive_list):
                if not keep:
                    break
                idx = torch.tensor(keep, device=dev)
                cache.batch_select_indices(idx)
                mask, next_pos, alive, tok = mask[idx], next_pos[idx], alive[idx], tok[idx]
                alive_list = [alive_list[k] for k in keep]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            logits = self.model(input_ids=tok.unsqueeze(1), attention_mask=mask,
                                position_ids=next_pos.unsqueeze(1), use_cache=True,
                                **kw).logits[:, -1]
            next_pos = next_pos + 1
        return [(out[i], finish[i]) for i in range(b)]
