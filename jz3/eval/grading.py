"""Public grading API: `extract_answer(text, benchmark)` and `is_correct(output, gold, benchmark)`.

Multiple-choice benchmarks compare letters; every other benchmark compares the extracted answer
with the gold one through `jz3.eval.equivalence` (normalisation, exact numbers, structures, then
sympy in a helper process with a timeout). See docs/GRADING.md for the rules and known gaps.
"""

from __future__ import annotations

from typing import List, Optional

from jz3.eval.equivalence import Equivalence
from jz3.eval.extract import extract_choice, extract_math
from jz3.eval.loaders import LETTERS, MULTIPLE_CHOICE

_EQUIV = Equivalence()


def is_multiple_choice(benchmark: str) -> bool:
    return benchmark in MULTIPLE_CHOICE


def extract_answer(text: str, benchmark: str) -> str:
    """The final answer in a model output: a letter for multiple-choice sets, else a string."""
    if is_multiple_choice(benchmark):
        return extract_choice(text, LETTERS[:5])
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


def answers_match(pred: str, gold: str, benchmark: str) -> bool:
    """Compare an already extracted answer with the gold one."""
    if is_multiple_choice(benchmark):
        return bool(pred) and pred.strip("() ").upper() == gold.strip("() ").upper()
    return _EQUIV.equal(pred, gold)


def is_correct(output: str, gold: str, benchmark: str) -> bool:
    """Is the model's output right? (extracts, then compares)"""
    return answers_match(extract_answer(output, benchmark), gold, benchmark)


def majority_vote(preds: List[str], benchmark: str) -> Optional[str]:
    """The most common answer among samples (maj@k), equivalent answers counted together; ties go
    to the answer seen first."""
    groups: List[List[str]] = []
    for p in preds:
        if not p:
            continue
        for g in groups:
            if answers_match(p, g[0], benchmark):
                g.append(p)
                break
        else:
            groups.append([p])
    if not groups:
        return None
    return max(groups, key=len)[0]
