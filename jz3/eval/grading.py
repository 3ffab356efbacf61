"""Public grading API: `extract_answer(text, benchmark)` and `is_correct(output, gold, benchmark)`.

Multiple-choice benchmarks compare letters; every other benchmark compares the extracted answer
with the gold one through `jz3.eval.equivalence` (normalisation, exact numbers, structures, then
sympy in a helper process with a timeout). See docs/GRADING.md for the rules and known gaps.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import List, Optional

from jz3.config.eval import GradingMode
from jz3.eval.equivalence import Equivalence
from jz3.eval.extract import extract_choice, extract_math
from jz3.eval.loaders import LETTERS, MULTIPLE_CHOICE

_EQUIV = Equivalence()
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """One graded output: `reason` is "" when correct, else "no answer found", "not equivalent",
    or what went wrong ("sympy timeout after 5.0s", "error: ValueError: ...")."""

    correct: bool
    pred: str
    reason: str


def is_multiple_choice(benchmark: str) -> bool:
    return benchmark in MULTIPLE_CHOICE


def extract_answer(text: str, benchmark: str, mode: GradingMode = GradingMode.strict) -> str:
    """The final answer in a model output: a letter for multiple-choice sets, else a string
    (`mode=release`: the release's extraction order, jz3.eval.release)."""
    if is_multiple_choice(benchmark):
        return extract_choice(text, LETTERS[:5])
    if GradingMode(mode) == GradingMode.release:
        from jz3.eval.release import release_extract

        return release_extract(text)
    return extract_math(text)


def choice_letter(text: str, choices: List[str]) -> str:
    """The letter of the option whose content equals the output's final answer ("" if none)."""
    ans = extract_math(text)
    if not ans:
        return ""
    for i, c in enumerate(choices):
        if _EQUIV.equal(ans, c):
            return LETTERS[i]
    return ""


_WHOLE_SOLUTION = re.compile(r"\\boxed|\\fbox|####|answer\s*(?:is|:)|\n", re.IGNORECASE)


def gold_answer(gold: str, benchmark: str, mode: GradingMode = GradingMode.strict) -> str:
    """The gold answer itself: a gold given as a whole solution (a box, `#### N`, "The answer
    is", several lines) is read by the same rules as a model's output."""
    if _WHOLE_SOLUTION.search(gold):
        return extract_answer(gold, benchmark, mode) or gold
    return gold


def _match(pred: str, gold: str, benchmark: str,
           mode: GradingMode = GradingMode.strict) -> Verdict:
    gold = gold_answer(gold, benchmark, mode)
    if not pred:
        return Verdict(False, pred, "no answer found")
    if is_multiple_choice(benchmark):
        ok = pred.strip("() ").upper() == gold.strip("() ").upper()
        return Verdict(ok, pred, "" if ok else "not equivalent")
    if GradingMode(mode) == GradingMode.release:
        from jz3.eval.release import release_equal

        try:
            ok = release_equal(pred, gold, _EQUIV)
        except Exception as e:  # noqa: BLE001 - a grading error is a wrong answer with a reason
            return Verdict(False, pred, f"error: {type(e).__name__}: {e}"[:300])
        return Verdict(ok, pred, "" if ok else "not equal under the release protocol")
    try:
        out = _EQUIV.compare(pred, gold)
    except Exception as e:  # noqa: BLE001 - a grading error is a wrong answer with a reason
        log.warning("grading error on %.200r vs %.200r: %s", pred[:200], gold[:200], e)
        return Verdict(False, pred, f"error: {type(e).__name__}: {e}"[:300])
    return Verdict(out.eq, pred, "" if out.eq else (out.reason or "not equivalent"))


def answers_match(pred: str, gold: str, benchmark: str,
                  mode: GradingMode = GradingMode.strict) -> bool:
    """Compare an already extracted answer with the gold one (never raises)."""
    return _match(pred, gold, benchmark, mode).correct


def grade(output: str, gold: str, benchmark: str,
          mode: GradingMode = GradingMode.strict) -> Verdict:
    """Extract the answer from a model output and compare it with the gold one, with the reason
    when it is not right. Never raises: an error inside grading is a wrong answer."""
    try:
        pred = extract_answer(output, benchmark, mode)
    except Exception as e:  # noqa: BLE001
        log.warning("extraction error on an output of %d chars: %s", len(output), e)
        return Verdict(False, "", f"error: {type(e).__name__}: {e}"[:300])
    return _match(pred, gold, benchmark, mode)


def is_correct(output: str, gold: str, benchmark: str,
               mode: GradingMode = GradingMode.strict) -> bool:
    """Is the model's output right? (extracts, then compares; never raises)"""
    return grade(output, gold, benchmark, mode).correct


def majority_vote(preds: List[str], benchmark: str,
                  mode: GradingMode = GradingMode.strict) -> Optional[str]:
    """The most common answer among samples (maj@k), equivalent answers counted together; ties go
    to the answer seen first."""
    groups: List[List[str]] = []
    for p in preds:
        if not p:
            continue
        for g in groups:
            if answers_match(p, g[0], benchmark, mode):
                g.append(p)
                break
        else:
            groups.append([p])
    if not groups:
        return None
    return max(groups, key=len)[0]
