"""The typed benchmark registry: for each benchmark its file, record parser, answer kind, the
settings and shots of the release's eval scripts, the exemplar set, and its reference solution.

Used by evaluation (`jz3.eval`), decontamination (`jz3.data.decontam`) and the reference-solution
loss (`jz3.eval.loss`). The release protocol (RUCAIBox/JiuZhang3.0 `sh/eval/*.sh`,
`eval/utils.py`, `eval/parser.py`) is summarised in docs/EVAL.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable, Dict, FrozenSet, List, Optional, Tuple

from jz3 import braces
from jz3.benchmarks.io import BenchmarkFormatError, read_records
from jz3.config.enums import EvalSetting

LETTERS = "ABCDEFGHIJ"
COT, TOOL = EvalSetting.cot, EvalSetting.tool


class Benchmark(str, Enum):
    gsm8k = "gsm8k"
    math_oai = "math-oai"  # MATH500
    svamp = "svamp"
    asdiv = "asdiv"
    mawps = "mawps"
    carp_en = "carp_en"
    tabmwp = "tabmwp"
    minerva_math = "minerva_math"
    aqua = "aqua"
    sat_math = "sat_math"
    mmlu_stem = "mmlu_stem"
    gsm_hard = "gsm-hard"


class AnswerKind(str, Enum):
    number = "number"  # gold normalised like 145.0 -> 145, "2,125" -> 2125
    expression = "expression"  # LaTeX / math expression, compared symbolically
    choice = "choice"  # a letter A-E
    text = "text"  # a number or a short text answer (TabMWP; ASDiv: "Yes", "3:30 p.m.", ...)


class ReferenceKind(str, Enum):
    none = "none"
    text = "text"  # a worked natural-language solution
    code = "code"  # a program (GSM-Hard)


@dataclass
class EvalItem:
    idx: int
    question: str
    gold: str
    choices: Optional[List[str]] = None
    reference: Optional[str] = None  # the dataset's own solution, as stored


@dataclass(frozen=True)
class BenchmarkSpec:
    """What jz3 knows about one benchmark.

    `settings`/`shots`: the settings the release evaluates it in and the number of exemplars per
    setting (`sh/eval/cot_model.sh`, `tool_model.sh`); `base_shots`: the CoT shots of
    `base_model.sh` (base models). `exemplars`: the jz3 exemplar set (`jz3/eval/fewshot/`).
    `optional`: a missing file is reported as unavailable instead of failing the run.
    """

    name: Benchmark
    parse: Callable[[dict], EvalItem]
    answer: AnswerKind
    settings: FrozenSet[EvalSetting]
    shots: Dict[EvalSetting, int]
    exemplars: str
    question_fields: Tuple[str, ...]  # raw record fields holding the question (decontamination)
    files: Tuple[str, ...] = ("test.jsonl",)
    reference: ReferenceKind = ReferenceKind.none
    base_shots: int = 5
    keeps_idx: bool = False  # the record's own `idx`/`id` is the item id (else: position)
    optional: bool = False
    clean_reference: Callable[[str], str] = field(default=lambda s: s)

    @property
    def multiple_choice(self) -> bool:
        return self.answer == AnswerKind.choice


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


def last_boxed(text: str) -> str:
    """The content of the last `\\boxed{...}` (braces balanced), "" when there is none."""
    return braces.last_boxed(text, ("\\boxed",)) or ""


def _choices_text(choices: List[str]) -> str:
    return "\nAnswer Choices: " + " ".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))


def _gsm8k(r: dict) -> EvalItem:
    return EvalItem(r["idx"], r["question"], _num(r["answer"].split("####")[-1]),
                    reference=r["answer"])


def _math(r: dict) -> EvalItem:
    return EvalItem(0, r["problem"], r["answer"], reference=r["solution"])


def _minerva(r: dict) -> EvalItem:
    gold = last_boxed(r["solution"])
    if not gold:
        raise ValueError("solution (no \\boxed{} answer)")
    return EvalItem(r.get("idx", 0), r["problem"], gold, reference=r["solution"])


def _svamp(r: dict) -> EvalItem:
    body = r["Body"].strip()  # as the release's parse_question: body ends with "."
    body = body if body.endswith(".") else body + "."
    return EvalItem(r["idx"], body + " " + r["Question"].strip(), _num(r["Answer"]))


def _asdiv(r: dict) -> EvalItem:
    gold = re.sub(r"\s*\(.*\)\s*$", "", r["answer"]).strip()
    return EvalItem(r["idx"], r["body"].strip() + " " + r["question"].strip(), _num(gold))


def _mawps(r: dict) -> EvalItem:
    return EvalItem(r["idx"], r["input"], _num(r["target"]))


def _gsm_hard(r: dict) -> EvalItem:
    if not isinstance(r["target"], (int, float)):
        raise TypeError("target (not a number)")
    return EvalItem(r.get("idx", 0), r["input"], _num(r["target"]), reference=r["code"])


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
    choices (list or null), unit, answer. The question is worded as the release's
    `eval/parser.py` `parse_question`; the gold is normalised like a number when it is one."""
    title = f'regarding "{r["table_title"]}" ' if r.get("table_title") else ""
    question = f"Read the following table {title}and answer a question:\n" \
               f"{r['table']}\n{r['question']}"
    choices = r.get("choices") or None
    if choices:
        question += f" Please select from the following options: {[str(c) for c in choices]}"
    answer = str(r["answer"])
    gold = _num(answer) if re.fullmatch(r"-?[\d,]*\.?\d+", answer) else answer.strip().lower()
    return EvalItem(idx, question, gold, choices=[str(c) for c in choices] if choices else None,
                    reference=r.get("solution"))


def _answer_type_hint(item: EvalItem) -> None:
    """The release appends " (True or False)" / " (Yes or No)" to questions with such a gold
    (`eval/parser.py` `parse_question`)."""
    g = item.gold.strip().lower()
    if g in ("true", "false"):
        item.question += " (True or False)"
    elif g in ("yes", "no"):
        item.question += " (Yes or No)"


_CALC = re.compile(r"<<[^>]*>>")
_BOTH = frozenset({COT, TOOL})
_COT = frozenset({COT})


def _spec(name: Benchmark, parse, answer: AnswerKind, settings, exemplars: str,
          fields: Tuple[str, ...], cot_shots: int = 0, **kw) -> BenchmarkSpec:
    shots = {s: (cot_shots if s == COT else 0) for s in settings}
    return BenchmarkSpec(name, parse, answer, settings, shots, exemplars, fields, **kw)


REGISTRY: Dict[Benchmark, BenchmarkSpec] = {s.name: s for s in (
    _spec(Benchmark.gsm8k, _gsm8k, AnswerKind.number, _BOTH, "gsm8k", ("question",),
          reference=ReferenceKind.text, keeps_idx=True,
          clean_reference=lambda s: _CALC.sub("", s)),
    _spec(Benchmark.math_oai, _math, AnswerKind.expression, _BOTH, "math", ("problem",),
          reference=ReferenceKind.text),
    _spec(Benchmark.svamp, _svamp, AnswerKind.number, _BOTH, "gsm8k", ("Body", "Question"),
          keeps_idx=True),
    _spec(Benchmark.asdiv, _asdiv, AnswerKind.text, _BOTH, "gsm8k", ("body", "question"),
          keeps_idx=True),
    _spec(Benchmark.mawps, _mawps, AnswerKind.number, _BOTH, "gsm8k", ("input",),
          keeps_idx=True),
    _spec(Benchmark.carp_en, _carp, AnswerKind.expression, _COT, "carp_en", ("content",),
          reference=ReferenceKind.text),
    _spec(Benchmark.tabmwp, tabmwp_item, AnswerKind.text, _BOTH, "gsm8k", ("question",),
          files=("test.jsonl", "test.json", "problems_test.json"), reference=ReferenceKind.text,
          optional=True),
    _spec(Benchmark.minerva_math, _minerva, AnswerKind.expression, _COT, "math", ("problem",),
          reference=ReferenceKind.text),
    _spec(Benchmark.aqua, _aqua, AnswerKind.choice, _COT, "multiple_choice", ("question",),
          cot_shots=5, reference=ReferenceKind.text),
    _spec(Benchmark.sat_math, _sat, AnswerKind.choice, _COT, "multiple_choice", ("question",),
          cot_shots=5, keeps_idx=True),
    _spec(Benchmark.mmlu_stem, _mmlu, AnswerKind.choice, _COT, "multiple_choice", ("question",),
          cot_shots=5),
    _spec(Benchmark.gsm_hard, _gsm_hard, AnswerKind.number, frozenset({TOOL}), "gsm8k",
          ("input",), reference=ReferenceKind.code, keeps_idx=True),
)}
ALIASES = {"math": Benchmark.math_oai, "gsm_hard": Benchmark.gsm_hard}
MULTIPLE_CHOICE = frozenset(b.value for b, s in REGISTRY.items() if s.multiple_choice)


def parse_benchmark(name: str | Benchmark, key: str = "benchmark") -> Benchmark:
    """The `Benchmark` a config string names (error lists the known names under `key`)."""
    if isinstance(name, Benchmark):
        return name
    if name in ALIASES:
        return ALIASES[name]
    try:
        return Benchmark(name)
    except ValueError:
        raise ValueError(f"{key}: unknown benchmark {name!r}; known: "
                         f"{[b.value for b in Benchmark]}") from None


def spec(name: str | Benchmark) -> BenchmarkSpec:
    return REGISTRY[parse_benchmark(name)]


def find_file(data_dir: str | Path, name: str | Benchmark) -> Optional[Path]:
    """The benchmark's test file under `data_dir/<name>/`, or None when absent."""
    s = spec(name)
    d = Path(data_dir) / s.name.value
    for cand in s.files:
        if (d / cand).exists():
            return d / cand
    return None


def benchmark_file(data_dir: str | Path, name: str | Benchmark) -> Path:
    path = find_file(data_dir, name)
    if path is None:
        s = spec(name)
        raise FileNotFoundError(f"no test file for benchmark {s.name.value!r} under "
                                f"{Path(data_dir) / s.name.value} (looked for {list(s.files)})")
    return path


def load_benchmark(name: str | Benchmark, data_dir: str | Path,
                   limit: Optional[int] = None, path: Optional[Path] = None) -> List[EvalItem]:
    """All items of one benchmark (the first `limit` when given); idx = the record's own id for
    sets that have one, else its position. Malformed records raise naming file:line:field."""
    s = spec(name)
    path = Path(path) if path is not None else benchmark_file(data_dir, s.name)
    items: List[EvalItem] = []
    for pos, (line, rec) in enumerate(read_records(path)):
        if limit is not None and pos >= limit:
            break
        try:
            if not isinstance(rec, dict):
                raise TypeError("record (not a JSON object)")
            item = s.parse(rec)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise BenchmarkFormatError(f"{path}:{line}: field {e} missing or malformed") from e
        if not s.keeps_idx:
            item.idx = pos
        if not s.multiple_choice:
            _answer_type_hint(item)
        items.append(item)
    return items


def question_text(s: BenchmarkSpec, row: dict, where: str) -> str:
    """The raw question text of one record (decontamination indexes these words)."""
    missing = [f for f in s.question_fields if not isinstance(row.get(f), str)]
    if missing:
        raise BenchmarkFormatError(f"{where}: no question field {missing} for benchmark "
                                   f"{s.name.value!r}")
    return " ".join(row[f] for f in s.question_fields)


def reference_pairs(name: str | Benchmark, data_dir: str | Path,
                    limit: Optional[int] = None) -> List[Tuple[str, str]]:
    """(question, worked reference solution) pairs of a benchmark with text references."""
    s = spec(name)
    if s.reference != ReferenceKind.text:
        ok = [b.value for b, x in REGISTRY.items() if x.reference == ReferenceKind.text]
        raise ValueError(f"benchmark {s.name.value!r} has no worked reference solutions "
                         f"(reference: {s.reference.value}); benchmarks with them: {ok}")
    items = load_benchmark(s.name, data_dir, limit)
    return [(it.question, s.clean_reference(it.reference or "")) for it in items]
