"""Are two normalised answers the same? Strings, exact numbers, tuples/intervals, matrices,
unordered lists, equations/inequalities, then sympy (in a helper process) as the last resort."""

from __future__ import annotations

import re
from typing import List, Optional

from jz3.eval.normalize import normalize_answer, numbers_equal, parse_number
from jz3.eval.symbolic import SymbolicChecker, default_checker

_RELATIONS = ("\\le", "\\ge", "\\ne", "<=", ">=", "<", ">", "=")
_FLIP = {"\\le": "\\ge", "\\ge": "\\le", "<": ">", ">": "<", "<=": ">=", ">=": "<=",
         "=": "=", "\\ne": "\\ne"}
_MATRIX = re.compile(r"^\\begin\{([pbvB]?matrix|array)\}(?:\{[^}]*\})?(.*)\\end\{\1\}$")
_WORDS = re.compile(r"[a-zA-Z][a-zA-Z\s'.-]*[a-zA-Z]")
_LATEXY = re.compile(r"\\(frac|sqrt|pi|cdot|times|sin|cos|tan|log|ln)|\^|[a-zA-Z]")


def split_top_level(s: str, sep: str = ",") -> List[str]:
    """Split on `sep` outside any (), [], {}."""
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _bracketed(s: str) -> Optional[tuple]:
    """(open, close, items) for `(a,b)`, `[a,b)`, `\\{a,b\\}` with a top-level comma."""
    s2 = s.replace("\\{", "{").replace("\\}", "}")
    if len(s2) >= 2 and s2[0] in "([{" and s2[-1] in ")]}":
        inner = s2[1:-1]
        depth = 0
        for ch in inner:  # the outer pair must enclose everything: `(1)+(2)` is not a tuple
            depth += ch in "([{"
            depth -= ch in ")]}"
            if depth < 0:
                return None
        items = split_top_level(inner)
        if len(items) > 1:
            return s2[0], s2[-1], items
    return None


def _split_relation(s: str) -> Optional[tuple]:
    for rel in _RELATIONS:
        parts = s.split(rel)
        if len(parts) == 2 and all(parts):
            if rel in ("<", ">") and ("<=" in s or ">=" in s):
                continue
            return parts[0], rel, parts[1]
    return None


def _expand_pm(s: str) -> List[str]:
    if "\\pm" not in s or s.count("\\pm") != 1:
        return [s]
    return [s.replace("\\pm", "+"), s.replace("\\pm", "-")]


class Equivalence:
    """Equivalence of two normalised answers; `checker` runs the sympy step."""

    def __init__(self, checker: Optional[SymbolicChecker] = None, use_sympy: bool = True):
        self._checker = checker
        self.use_sympy = use_sympy

    @property
    def checker(self) -> SymbolicChecker:
        if self._checker is None:
            self._checker = default_checker()
        return self._checker

    def equal(self, pred: str, gold: str) -> bool:
        a, b = normalize_answer(pred), normalize_answer(gold)
        return self._equal(a, b, depth=0)

    def _equal(self, a: str, b: str, depth: int) -> bool:
        if a == b:
            return True
        if not a or not b or depth > 4:
            return False
        if _WORDS.fullmatch(a) or _WORDS.fullmatch(b):  # text answers: never letters-as-symbols
            return a.lower() == b.lower()  # ("east" is not e*a*s*t == "seat")
        fa, fb = parse_number(a), parse_number(b)
        if fa is not None and fb is not None:
            return numbers_equal(a, b, fa, fb)
        # tuples and intervals: same brackets, same length, elementwise
        ta, tb = _bracketed(a), _bracketed(b)
        if ta or tb:
            if not (ta and tb) or ta[0] != tb[0] or ta[1] != tb[1] or len(ta[2]) != len(tb[2]):
                return False
            if ta[0] == "{":  # a set: order does not matter
                return self._multiset_equal(ta[2], tb[2], depth)
            return all(self._equal(x, y, depth + 1) for x, y in zip(ta[2], tb[2], strict=True))
        ma, mb = _MATRIX.match(a), _MATRIX.match(b)
        if ma or mb:
            if not (ma and mb):
                return False
            rows_a = [split_top_level(r, "&") for r in ma.group(2).split("\\\\") if r]
            rows_b = [split_top_level(r, "&") for r in mb.group(2).split("\\\\") if r]
            if [len(r) for r in rows_a] != [len(r) for r in rows_b]:
                return False
            return all(self._equal(x, y, depth + 1)
                       for ra, rb in zip(rows_a, rows_b, strict=True) for x, y in zip(ra, rb, strict=True))
        # unbracketed lists (all solutions) and `a \pm b`: order does not matter
        la = [p for x in split_top_level(a) for p in _expand_pm(x)]
        lb = [p for x in split_top_level(b) for p in _expand_pm(x)]
        if len(la) > 1 or len(lb) > 1:
            return len(la) == len(lb) and self._multiset_equal(la, lb, depth)
        ra, rb = _split_relation(a), _split_relation(b)
        if ra or rb:
            if not (ra and rb):
                return False
            if ra[1] == rb[1] and self._equal(ra[0], rb[0], depth + 1) \
                    and self._equal(ra[2], rb[2], depth + 1):
                return True
            return _FLIP[ra[1]] == rb[1] and self._equal(ra[0], rb[2], depth + 1) \
                and self._equal(ra[2], rb[0], depth + 1)
        if not self.use_sympy or not (_LATEXY.search(a) or _LATEXY.search(b)):
            return False
        if fa is not None or fb is not None:  # a number vs an expression: the expression
            other = b if fa is not None else a  # must at least be free of letters
            if re.search(r"(?<!\\)\b[a-zA-Z]\b", other.replace("\\pi", "")):
                return False
        return self.checker.equal(a, b)

    def _multiset_equal(self, la: List[str], lb: List[str], depth: int) -> bool:
        if len(la) != len(lb):
            return False
        rest = list(lb)
        for x in la:
            for k, y in enumerate(rest):
                if self._equal(x, y, depth + 1):
                    del rest[k]
                    break
            else:
                return False
        return True
