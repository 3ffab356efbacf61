"""`eval.grading: release`: the JiuZhang3.0 release's grading protocol (its eval/parser.py
`extract_answer` + eval/grader.py `math_equal`), re-implemented here to reproduce the paper's
numbers; `strict` (jz3.eval.grading) stays the default. docs/GRADING.md lists the differences.

Extraction, in the release's order: Minerva's "final answer is $..$. I hope" > the text after
the last "boxed" (its braced group, or up to the next `$`) > after the last "he answer is" >
after the last "final answer is" > the last number (commas removed). Multiple-choice sets use
jz3's letter extraction.

Leniencies on top of jz3's strict equivalence (each changes paper numbers):
- numbers: relative tolerance 1e-4, and `gold / 100`, `gold`, `gold * 100` all accepted (a
  GSM8K answer 50 is right for a gold 0.5 or 5000); a trailing `%` divides by 100;
- brackets dropped: `(a,b]` = `[a,b)` = `(a,b)` item by item;
- `x = v` (a left side of at most two characters) against `v`;
- two constant expressions whose values agree to a relative 1e-4 (`\\frac{100}{3}` = `33.33`).
"""

from __future__ import annotations

import math
import re
from typing import Optional

from jz3.braces import match_brace
from jz3.eval.equivalence import Equivalence
from jz3.eval.mathtree import MathParseError, evaluate, parse_math, symbols_of
from jz3.eval.normalize import normalize_answer

REL_TOL = 1e-4
_NUMBER = re.compile(r"-?\d*\.?\d+")
_BRACKETED = re.compile(r"^[(\[].+[)\]]$", re.DOTALL)


def release_extract(text: str) -> str:
    """The release's final answer of a free-form output (see the module docstring)."""
    text = text.replace("\u043a\u0438", "")
    if "final answer is $" in text and "$. I hope" in text:
        pred = text.split("final answer is $", 1)[1].split("$. I hope", 1)[0].strip()
    elif "boxed" in text:
        tail = text.rsplit("boxed", 1)[1]
        if not tail:
            return ""
        if tail[0] == "{":
            end = match_brace(tail, 0)
            pred = tail[1:end] if end >= 0 else tail[1:]
        else:
            pred = tail.split("$")[0].strip()
    elif "he answer is" in text:
        pred = text.rsplit("he answer is", 1)[1].strip()
    elif "final answer is" in text:
        pred = text.rsplit("final answer is", 1)[1].strip()
    else:
        nums = _NUMBER.findall(text.replace(",", ""))
        pred = nums[-1] if nums else ""
    pred = re.sub(r"\n\s*", "", pred)
    if pred.startswith(":"):
        pred = pred[1:]
    return pred.rstrip(".").rstrip("/")


def _number(s: str) -> Optional[float]:
    """A float for `1,234.5`, `50%`, `50\\%` (percent divided by 100), else None."""
    s = s.replace(",", "").strip()
    scale = 1.0
    if s.endswith("%"):
        s, scale = s[:-1].rstrip("\\"), 0.01
    try:
        v = float(s) * scale
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL)


def _constant_value(s: str) -> Optional[complex]:
    try:
        tree = parse_math(normalize_answer(s))
        if symbols_of(tree):
            return None
        return evaluate(tree, {})
    except (MathParseError, ValueError):
        return None


def release_equal(pred: str, gold: str, equiv: Equivalence, depth: int = 0) -> bool:
    """The release's `math_equal` leniencies, then jz3's strict equivalence."""
    pred, gold = str(pred).strip(), str(gold).strip()
    if not pred or depth > 4:
        return False
    if pred.lower() == gold.lower():
        return True
    fp, fg = _number(pred), _number(gold)
    if fp is not None and fg is not None:
        return any(_close(fp, g) for g in (fg / 100, fg, fg * 100))
    if _BRACKETED.match(pred) and _BRACKETED.match(gold):
        ps, gs = pred[1:-1].split(","), gold[1:-1].split(",")
        if len(ps) == len(gs) and all(release_equal(p, g, equiv, depth + 1)
                                      for p, g in zip(ps, gs, strict=True)):
            return True
    if pred.count("=") == 1 and "=" not in gold and len(pred.split("=")[0].strip()) <= 2:
        return release_equal(pred.split("=")[1], gold, equiv, depth + 1)
    if gold.count("=") == 1 and "=" not in pred and len(gold.split("=")[0].strip()) <= 2:
        return release_equal(pred, gold.split("=")[1], equiv, depth + 1)
    if equiv.compare(pred, gold).eq:
        return True
    va, vb = _constant_value(pred), _constant_value(gold)
    if va is not None and vb is not None:
        return abs(va - vb) <= REL_TOL * max(abs(va), abs(vb))
    return False
