"""Benchmark loaders: each yields `EvalItem(idx, question, gold, choices?, reference?)` with the
gold answer normalised per benchmark (numbers without separators or `.0`, letters for
multiple-choice, units in parentheses dropped)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

from jz3.eval.normalize import normalize_answer

MULTIPLE_CHOICE = frozenset({"aqua", "sat_math", "mmlu_stem"})
LETTERS = "ABCDEFGHIJ"


@dataclass
class EvalItem:
    idx: int
    question: str
    gold: str
    choices: Optional[List[str]] = None
    reference: Optional[str] = None  # the dataset's own solution text, when it has one


class BenchmarkFormatError(ValueError):
    """A benchmark record lacks a field or has a value of the wrong shape (names file:line)."""


def _num(x: object) -> str:
    """145.0 -> '145', 11.50 -> '11.5', '2,125' -> '2125'."""
    s = str(x).strip().replace(",", "")
    try:
        f = float(s)
    except ValueError:
        return str(x).strip()
    if f == int(f) and abs(f) < 1e15:
        return str(int(f))
    return s.rstrip("0").rstrip(".") if "." in s else s


def _choices_text(choices: List[str]) -> str:
    return "\nAnswer Choices: " + " ".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))


def _gsm8k(r: dict) -> EvalItem:
    return EvalItem(r["idx"], r["question"], _num(r["answer"].split("####")[-1]),
                    reference=r["answer"])


def _math(r: dict) -> EvalItem:
    return EvalItem(0, r["problem"], r["answer"], reference=r["solution"])


def _svamp(r: dict) -> EvalItem:
    body = r["Body"].strip()
    sep = " " if body.endswith((".", "?", "!")) else ". "
    return EvalItem(r["idx"], body + sep + r["Question"].strip(), _num(r["Answer"]))


def _asdiv(r: dict) -> EvalItem:
    gold = re.sub(r"\s*\(.*\)\s*$", "", r["answer"]).strip()
    return EvalItem(r["idx"], r["body"].strip() + " " + r["question"].strip(), _num(gold))


def _mawps(r: dict) -> EvalItem:
    return EvalItem(r["idx"], r["input"], _num(r["target"]))


def _carp(r: dict) -> EvalItem:
    return EvalItem(0, r["content"], r["answer"], reference=r.get("steps"))


def _aqua(r: dict) -> EvalItem:
    choices = [re.sub(r"^[A-E]\s*\)\s*", "", o).strip() for o in r["options"]]
    return EvalItem(0, r["question"] + _choices_text(choices), r["correct"].strip().upper(),
                    choices=choices, reference=r.get("rationale"))


def _sat(r: dict) -> EvalItem:
    parts = re.split(r"(?:^|\s)([A-E])[.)]\s+", " " + r["options"])
    choices = [p.strip() for p in parts[2::2]]
    if len(choices) < 2:
        raise KeyError("options")
    return EvalItem(int(r["id"]), r["question"] + _choices_text(choices),
                    r["Answer"].strip().upper(), choices=choices)


def _mmlu(r: dict) -> EvalItem:
    choices = [str(c) for c in r["choices"]]
    return EvalItem(0, r["question"] + _choices_text(choices), LETTERS[int(r["answer"])],
                    choices=choices)


def tabmwp_item(r: dict, idx: int = 0) -> EvalItem:
    """TabMWP's public format (problems_test.json values): question, table, table_title,
    choices (list or null), unit, answer; the gold is normalised like a number when it is one."""
    title = f"Table: {r['table_title']}\n" if r.get("table_title") else ""
    question = f"Read the following table and then answer the question:\n\n{title}{r['table']}\n\n" \
               f"Question: {r['question']}"
    if r.get("unit"):
        question += f" (Unit: {r['unit']})"
    choices = r.get("choices") or None
    if choices:
        question += "\nAnswer Choices: " + ", ".join(str(c) for c in choices)
    answer = str(r["answer"])
    gold = _num(answer) if re.fullmatch(r"-?[\d,]*\.?\d+", answer) else normalize_answer(answer)
    return EvalItem(idx, question, gold, choices=[str(c) for c in choices] if choices else None,
                    reference=r.get("solution"))


LOADERS: Dict[str, Callable[[dict], EvalItem]] = {
    "gsm8k": _gsm8k, "math-oai": _math, "math": _math, "svamp": _svamp, "asdiv": _asdiv,
    "mawps": _mawps, "carp_en": _carp, "aqua": _aqua, "sat_math": _sat, "mmlu_stem": _mmlu,
    "tabmwp": tabmwp_item,
}


def _records(path: Path) -> Iterator[tuple]:
    """(line number, record) from JSONL, or from a JSON list / dict of records (TabMWP)."""
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        rows = data.values() if isinstance(data, dict) else data
        for i, r in enumerate(rows, 1):
            yield i, r
        return
    with path.open() as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield i, json.loads(line)
                except json.JSONDecodeError as e:
                    raise BenchmarkFormatError(f"{path}:{i}: invalid JSON ({e})") from e


def benchmark_file(data_dir: str | Path, name: str) -> Path:
    d = Path(data_dir) / name
    for cand in ("test.jsonl", "test.json", "problems_test.json"):
        if (d / cand).exists():
            return d / cand
    raise FileNotFoundError(f"no test file for benchmark {name!r} under {d}")


def load_benchmark(name: str, data_dir: str | Path, limit: Optional[int] = None,
                   path: Optional[Path] = None) -> List[EvalItem]:
    """All items of one benchmark (the first `limit` when given), idx = position when absent."""
    if name not in LOADERS:
        raise KeyError(f"unknown benchmark {name!r}; known: {sorted(LOADERS)}")
    path = path or benchmark_file(data_dir, name)
    items: List[EvalItem] = []
    for pos, (line, rec) in enumerate(_records(path)):
        if limit is not None and pos >= limit:
            break
        try:
            item = LOADERS[name](rec)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise BenchmarkFormatError(f"{path}:{line}: field {e} missing or malformed") from e
        if name not in ("gsm8k", "svamp", "asdiv", "mawps", "sat_math"):
            item.idx = pos
        items.append(item)
    return items
