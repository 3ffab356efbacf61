"""Per-token loss of a causal LM on benchmark reference solutions (the ablation's yardstick).

Each item becomes `## Question\\n{question}\\n\\n## Solution\\n{reference solution}<eos>` (the
JiuZhang3.0 format); the loss counts the solution tokens only and is averaged per token over the
whole benchmark (token-weighted), so models sharing a tokenizer are directly comparable.
GSM8K's `<<48/2=24>>` calculator annotations are stripped; its `#### N` line is kept.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import torch

QUESTION = "## Question\n{q}\n\n## Solution\n"
_CALC = re.compile(r"<<[^>]*>>")


def reference_pairs(data_dir: str | Path, benchmark: str,
                    limit: Optional[int] = None) -> List[Tuple[str, str]]:
    """(question, reference solution) pairs of GSM8K test or MATH500."""
    path = Path(data_dir) / benchmark / "test.jsonl"
    out: List[Tuple[str, str]] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            r = json.loads(line)
            if benchmark == "gsm8k":
                q, s = r["question"], _CALC.sub("", r["answer"])
            elif benchmark == "math-oai":
                q, s = r["problem"], r["solution"]
            else:
                raise ValueError(f"{path}:{lineno}: no reference solutions known for {benchmark!r}"
                                 " (loss eval supports gsm8k, math-oai)")
            out.append((q, s))
            if limit is not None and len(out) >= limit:
                break
    return out


def _batches(items: List[Tuple[List[int], int]], bs: int) -> Iterator[List[Tuple[List[int], int]]]:
    for i in range(0, len(items), bs):
        yield items[i:i + bs]


@torch.no_grad()
def solution_loss(model, tokenizer, pairs: List[Tuple[str, str]], max_len: int = 512,
                  batch_size: int = 8) -> Dict[str, float]:
    """Token-weighted mean NLL (nats) of the solutions given the questions; also perplexity."""
    model.eval()
    eos = tokenizer.eos_token_id
    items: List[Tuple[List[int], int]] = []
    for q, s in pairs:
        p_ids = tokenizer(QUESTION.format(q=q), add_special_tokens=False)["input_ids"]
        s_ids = tokenizer(s, add_special_tokens=False)["input_ids"] + [eos]
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        ids = (bos + p_ids + s_ids)[:max_len]
        items.append((ids, min(len(bos) + len(p_ids), len(ids))))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    total, count = 0.0, 0
    for batch in _batches(items, batch_size):
        L = max(len(ids) for ids, _ in batch)
        inp = torch.full((len(batch), L), pad, dtype=torch.long)
        att = torch.zeros((len(batch), L), dtype=torch.long)
        lab = torch.full((len(batch), L), -100, dtype=torch.long)
        for b, (ids, start) in enumerate(batch):
            inp[b, :len(ids)] = torch.tensor(ids)
            att[b, :len(ids)] = 1
            lab[b, start:len(ids)] = torch.tensor(ids[start:])
        logits = model(input_ids=inp, attention_mask=att).logits.float()
        lp = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)), lab[:, 1:].reshape(-1),
            ignore_index=-100, reduction="sum")
        total += float(lp)
        count += int((lab[:, 1:] != -100).sum())
    loss = total / max(count, 1)
    return {"loss_per_token": loss, "ppl": math.exp(min(loss, 50.0)), "tokens": count,
            "items": len(items)}


def evaluate_losses(model_dir: str | Path, data_dir: str | Path, benchmarks: List[str],
                    limit: Optional[int] = None, max_len: int = 512,
                    batch_size: int = 8) -> Dict[str, Dict[str, float]]:
    """Load an HF export (model + tokenizer) and score every benchmark's references."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True,
                                                 dtype=torch.float32)
    return {b: solution_loss(model, tok, reference_pairs(data_dir, b, limit), max_len,
                             batch_size) for b in benchmarks}
