"""Candidate and target examples for influence: records -> tokenised (ids, loss mask) batches.

- kd / synth records `{id, prompt, completion, ...}`: input = prompt, output = completion.
- train records `{input, output}` (id = `id` field or `<file stem>:<line>`), or `{text}`.
- snippet / corpus records `{id, text}`: loss on the whole text.
- target records `{question, answer}` (GSM8K) or `{problem, solution}` (MATH): input =
  "## Question\\n{q}\\n\\n## Solution\\n", output = answer / solution.
A target's subtask is the record's `subtask` field, else the name given for its file, else the
file's dataset name (`dataset_name`).
Tokenised as `bos input output eos`, loss on output + eos, at most `max_len` tokens: a longer
example keeps its start (the prompt and the head of the completion, where the problem is), as
LESS's right truncation does; only when the prompt alone leaves less than half the window for
an output longer than that is the prompt cut from its left.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from jz3.data.records import PathLike, RecordError, expand_paths, iter_rows

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
    if "problem" in rec and "solution" in rec:
        return Example(rid, TARGET_TEMPLATE.format(question=rec["problem"]), rec["solution"], sub)
    if "input" in rec and "output" in rec:
        return Example(rid, rec["input"], rec["output"], sub)
    if "text" in rec:
        return Example(rid, "", rec["text"], sub)
    raise ValueError("record has none of prompt+completion, question+answer, problem+solution, "
                     "input+output, text")


SPLIT_STEMS = {"train", "test", "dev", "val", "valid", "validation", "data"}


def dataset_name(path: PathLike) -> str:
    """`gsm8k/train.jsonl` -> gsm8k, `math_train/train.jsonl` -> math_train, `gsm8k.jsonl` -> gsm8k."""
    p = Path(path)
    return p.parent.name if p.stem.lower() in SPLIT_STEMS and p.parent.name else p.stem


def numbered_records(path: Path) -> Iterator[Tuple[int, Any, Optional[str]]]:
    """(line number in the file, record or raw text, error) for every non-blank JSONL line
    (Parquet: row number), read by `jz3.data.records.iter_rows`."""
    for line_no, rec, err in iter_rows(path):
        if err is not None:
            yield line_no, rec, err[1]
        elif not isinstance(rec, dict):
            yield line_no, rec, f"not a JSON object ({type(rec).__name__})"
        else:
            yield line_no, rec, None


def load_examples(spec: PathLike | Sequence[PathLike], limit: Optional[int] = None,
                  subtask: Optional[str] = None) -> List[Example]:
    """Read examples from files/folders/globs (`limit` per call); errors name `file:line`."""
    out: List[Example] = []
    for path in expand_paths(spec):
        name = subtask or dataset_name(path)
        for line, rec, err in numbered_records(path):
            if err is not None:
                raise RecordError(path, line, err)
            try:
                out.append(example_from_record(rec, f"{path.stem}:{line}", name))
            except ValueError as e:
                raise RecordError(path, line, str(e)) from e
            if limit is not None and len(out) >= limit:
                return out
    return out


def load_targets(paths: Sequence[PathLike], names: Sequence[str] = (),
                 limit: Optional[int] = None) -> List[Example]:
    """Every target file as one subtask (`names[i]`, else its dataset name); `limit` per file.
    Two files that would share a subtask name are an error (LESS scores per subtask)."""
    if names and len(names) != len(paths):
        raise ValueError(f"influence.target_names has {len(names)} names for {len(paths)} targets")
    out: List[Example] = []
    seen: Dict[str, str] = {}
    for i, p in enumerate(paths):
        name = names[i] if names else dataset_name(p)
        if name in seen:
            raise ValueError(f"influence.targets: {p} and {seen[name]} both map to subtask "
                             f"{name!r}; set influence.target_names")
        seen[name] = str(p)
        got = load_examples(p, limit=limit, subtask=name)
        if not got:
            raise RecordError(p, 0, "no target examples (empty input)")
        out += got
    return out


@dataclass
class Batch:
    input_ids: torch.Tensor  # [N, T], right padded
    attention_mask: torch.Tensor  # [N, T]
    loss_mask: torch.Tensor  # [N, T]: 1 where token t is predicted with loss (t >= 1)


class Encoder:
    """Tokenises examples as `bos input output eos`, loss on output (+eos), at most max_len
    tokens (see the module docstring for what a longer example keeps)."""

    def __init__(self, tokenizer: Any, max_len: int):
        self.tok = tokenizer
        self.max_len = max_len
        self.bos = tokenizer.bos_token_id
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos

    def encode(self, ex: Example) -> tuple[List[int], List[int]]:
        inp = self.tok(ex.input, add_special_tokens=False)["input_ids"] if ex.input else []
        out = self.tok(ex.output, add_special_tokens=False)["input_ids"] + [self.eos]
        room = self.max_len - 1
        if len(inp) + len(out) > room:
            budget = room - min(len(out), room // 2)  # prompt tokens that keep half for output
            if len(inp) > budget:
                inp = inp[len(inp) - budget:] if budget > 0 else []
            out = out[: room - len(inp)]  # right truncation: the head (the problem) stays
        ids = [self.bos] + inp + out
        mask = [0] * (1 + len(inp)) + [1] * len(out)
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
