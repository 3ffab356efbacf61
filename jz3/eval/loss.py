"""Per-token loss of a causal LM on benchmark reference solutions (the ablation's yardstick).

Each item becomes `## Question\\n{question}\\n\\n## Solution\\n{reference solution}<eos>` (the
JiuZhang3.0 format); the loss counts the solution tokens only and is averaged per token over the
whole benchmark (token-weighted), so models sharing a tokenizer are directly comparable.
Reference solutions come from the benchmark registry (`jz3.benchmarks.reference_pairs`: any
benchmark with worked text solutions; GSM8K's `<<48/2=24>>` calculator annotations are stripped,
its `#### N` line kept).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from jz3.benchmarks import parse_benchmark, reference_pairs
from jz3.config.enums import Precision

QUESTION = "## Question\n{q}\n\n## Solution\n"
_TORCH_DTYPE = {Precision.fp32: torch.float32, Precision.bf16: torch.bfloat16,
                Precision.fp16: torch.float16}


@dataclass
class SolutionLoss:
    loss_per_token: float  # nats
    ppl: float
    tokens: int
    items: int
    # per item, in benchmark order: summed NLL (nats) and scored tokens (paired comparisons)
    item_nll: List[float] = field(default_factory=list)
    item_tokens: List[int] = field(default_factory=list)

    def as_dict(self, per_item: bool = False) -> Dict[str, Any]:
        d: Dict[str, Any] = {"loss_per_token": self.loss_per_token, "ppl": self.ppl,
                             "tokens": self.tokens, "items": self.items}
        if per_item:
            d.update(item_nll=self.item_nll, item_tokens=self.item_tokens)
        return d


def _batches(items: List[int], bs: int) -> Iterator[List[int]]:
    for i in range(0, len(items), bs):
        yield items[i:i + bs]


@torch.no_grad()
def solution_loss(model, tokenizer, pairs: Sequence[Tuple[str, str]], max_len: int = 512,
                  batch_size: int = 8) -> SolutionLoss:
    """Token-weighted mean NLL (nats) of the solutions given the questions; also perplexity.
    Batches hold items of similar length (less padding); per-item values are in `pairs` order."""
    if not pairs:
        raise ValueError("solution_loss: no (question, solution) pairs to score")
    model.eval()
    dev = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    items: List[Tuple[List[int], int]] = []
    for q, s in pairs:
        p_ids = tokenizer(QUESTION.format(q=q), add_special_tokens=False)["input_ids"]
        s_ids = tokenizer(s, add_special_tokens=False)["input_ids"] + [eos]
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        ids = (bos + p_ids + s_ids)[:max_len]
        items.append((ids, min(len(bos) + len(p_ids), len(ids))))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    order = sorted(range(len(items)), key=lambda i: len(items[i][0]))
    item_nll: List[float] = [0.0] * len(items)
    item_tokens: List[int] = [0] * len(items)
    for idx in _batches(order, batch_size):
        batch = [items[i] for i in idx]
        L = max(len(ids) for ids, _ in batch)
        inp = torch.full((len(batch), L), pad, dtype=torch.long)
        att = torch.zeros((len(batch), L), dtype=torch.long)
        lab = torch.full((len(batch), L), -100, dtype=torch.long)
        for b, (ids, start) in enumerate(batch):
            inp[b, :len(ids)] = torch.tensor(ids)
            att[b, :len(ids)] = 1
            lab[b, start:len(ids)] = torch.tensor(ids[start:])
        logits = model(input_ids=inp.to(dev), attention_mask=att.to(dev)).logits.float().cpu()
        lp = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)), lab[:, 1:].reshape(-1),
            ignore_index=-100, reduction="none").view(len(batch), -1)
        for i, n, t in zip(idx, lp.sum(1), (lab[:, 1:] != -100).sum(1), strict=True):
            item_nll[i], item_tokens[i] = float(n), int(t)
    count = sum(item_tokens)
    loss = sum(item_nll) / max(count, 1)
    return SolutionLoss(loss, math.exp(min(loss, 50.0)), count, len(items), item_nll, item_tokens)


def evaluate_losses(model_dir: str | Path, data_dir: str | Path, benchmarks: Sequence[str],
                    limit: Optional[int] = None, max_len: int = 512,
                    batch_size: int = 8, per_item: bool = False,
                    precision: Precision = Precision.fp32) -> Dict[str, Dict[str, Any]]:
    """Load an HF export (model + tokenizer, weights in `precision`) and score every
    benchmark's reference solutions; returns benchmark -> {loss_per_token, ppl, tokens, items}
    (`per_item`: and `item_nll`, `item_tokens`, one value per item in benchmark order)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    names = [parse_benchmark(b, "loss_eval.benchmarks") for b in benchmarks]
    pairs = {b.value: reference_pairs(b, data_dir, limit) for b in names}  # fail before loading
    tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()  # a ZeRO-3 training earlier in this process must not partition it
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True,
                                                 dtype=_TORCH_DTYPE[Precision(precision)])
    return {b: solution_loss(model, tok, p, max_len, batch_size).as_dict(per_item)
            for b, p in pairs.items()}
