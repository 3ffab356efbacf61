"""Candidate and target examples for influence: records -> tokenised (ids, loss mask) batches.

- kd / synth records `{id, prompt, completion, ...}`: input = prompt, output = completion.
- train records `{input, output}` (id = `id` field or `<file stem>:<line>`), or `{text}`.
- snippet / corpus records `{id, text}`: loss on the whole text.
- target records `{question, answer}` (GSM8K): input = "## Question\\n{q}\\n\\n## Solution\\n",
  output = answer; the subtask is the record's `subtask` field, else the file stem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import torch
import torch.nn.functional as F

from jz3.data.records import PathLike, RecordError, expand_paths, read_records

TARGET_TEMPLATE = "## Question\n{question}\n\n## Solution\n"


@dataclass
class Example:
    id: str
    input: str  # no loss
    output: str  # loss
    subtask: str = ""


def example_from_record(rec: Dict[str, Any], fallback_id: str, subtask: str = "") -> Example:
    """Map one record of any supported kind to an Example (ValueError names the missing field)."""
    rid = str(rec.get("id", fallback_id))
    sub = str(rec.get("subtask", subtask))
    if "prompt" in rec and "completion" in rec:
        return Example(rid, rec["prompt"], rec["completion"], sub)
    if "question" in rec and "answer" in rec:
        return Example(rid, TARGET_TEMPLATE.format(question=rec["question"]), rec["answer"], sub)
    if "input" in rec and "output" in rec:
        return Example(rid, rec["input"], rec["output"], sub)
    if "text" in rec:
        return Example(rid, "", rec["text"], sub)
    raise ValueError("record has none of prompt+completion, question+answer, input+output, text")


def load_examples(spec: PathLike | Sequence[PathLike], limit: Optional[int] = None) -> List[Example]:
    """Read examples from files/folders/globs; errors name `file:line: field`."""
    out: List[Example] = []
    for path in expand_paths(spec):
        for line, rec in enumerate(read_records(path), 1):
            try:
                out.append(example_from_record(rec, f"{path.stem}:{line}", path.stem))
            except ValueError as e:
                raise RecordError(path, line, str(e)) from e
            if limit is not None and len(out) >= limit:
                return out
    return out


@dataclass
class Batch:
    input_ids: torch.Tensor  # [N, T], right padded
    attention_mask: torch.Tensor  # [N, T]
    loss_mask: torch.Tensor  # [N, T]: 1 where token t is predicted with loss (t >= 1)


class Encoder:
    """Tokenises examples as `bos input output eos`, loss on output (+eos), truncated to max_len."""

    def __init__(self, tokenizer: Any, max_len: int):
        self.tok = tokenizer
        self.max_len = max_len
        self.bos = tokenizer.bos_token_id
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos

    def encode(self, ex: Example) -> tuple[List[int], List[int]]:
        inp = self.tok(ex.input, add_special_tokens=False)["input_ids"] if ex.input else []
        out = self.tok(ex.output, add_special_tokens=False)["input_ids"] + [self.eos]
        ids = [self.bos] + inp + out
        mask = [0] * (1 + len(inp)) + [1] * len(out)
        ids, mask = ids[: self.max_len], mask[: self.max_len]
        if sum(mask) == 0:  # the prompt fills max_len: keep the last tokens of the output
            keep = self.max_len - 1
            ids = [self.bos] + (inp + out)[-keep:]
            mask = [0] + [0] * max(0, keep - len(out)) + [1] * min(len(out), keep)
        return ids, mask

    def collate(self, examples: Iterable[Example]) -> Batch:
        enc = [self.encode(e) for e in examples]
        t = max(len(i) for i, _ in enc)
        ids = torch.full((len(enc), t), self.pad, dtype=torch.long)
        att = torch.zeros((len(enc), t), dtype=torch.long)
        lm = torch.zeros((len(enc), t), dtype=torch.float32)
        for n, (i, m) in enumerate(enc):
            ids[n, : len(i)] = torch.tensor(i)
            att[n, : len(i)] = 1
            lm[n, : len(m)] = torch.tensor(m, dtype=torch.float32)
        return Batch(ids, att, lm)


def per_example_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Mean next-token cross-entropy over each example's loss tokens: [N]."""
    lg = logits[:, :-1].float()
    tgt = batch.input_ids[:, 1:]
    nll = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), tgt.reshape(-1), reduction="none")
    nll = nll.view(tgt.shape)
    m = batch.loss_mask[:, 1:]
    return (nll * m).sum(1) / m.sum(1).clamp_min(1.0)


def file_stem(path: PathLike) -> str:
    return Path(path).stem
