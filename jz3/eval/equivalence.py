"""Are two normalised answers the same? Strings, exact numbers, sets of reals (intervals, unions,
one-variable inequalities), tuples/sets, matrices, unordered lists, equations/inequalities, then
sympy (in a helper process) as the last resort. Rules and their reasons: docs/GRADING.md."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import List, Optional

from jz3.eval.normalize import normalize_answer, numbers_equal, parse_number
from jz3.eval.relations import FLIP, parse_real_set, relation_chain, split_top, variables
from jz3.eval.symbolic import SymbolicChecker, default_checker

_MATRIX = re.compile(
    r"^\\begin\{([pbvBV]?matrix|array|smallmatrix)\}(?:\{[^{}]*\})?(.*)\\end\{\1\}$")
_WORDS = re.compile(r"[a-zA-Z][a-zA-Z\s'.-]*[a-zA-Z]")
_LATEXY = re.compile(r"\\(frac|sqrt|pi|cdot|times|sin|cos|tan|log|ln)|\^|[a-zA-Z]")
_VAR = re.compile(r"[a-zA-Z](?:_\{?\w+\}?)?")
MAX_SYMPY_CHARS = 1000  # longer answers are compared as strings/structures only
MAX_ANSWER_CHARS = 10_000  # longer answers are compared as exact strings only
_LIST_SEPS = (",", "\\lor", "\\land")


def split_top_level(s: str, sep: str = ",") -> List[str]:
    """Split on `sep` outside any (), [], {}."""
    return split_top(s, (sep,))[0]


def _bracketed(s: str) -> Optional[tuple]:
    """(open, close, items) for `(a,b)`, `[a,b)`, `\\{a,b\\}` with a top-level comma, and for a
    one-element set `\\{a\\}`."""
    is_set = s.startswith("\\{") and s.endswith("\\}")
    s2 = "{" + s[2:-2] + "}" if is_set else s
    if len(s2) >= 2 and s2[0] in "([{" and s2[-1] in ")]}":
        inner = s2[1:-1]
        depth = 0
        for ch in inner:  # the outer pair must enclose everything: `(1)+(2)` is not a tuple
            depth += ch in "([{"
            depth -= ch in ")]}"
            if depth < 0:
                return None
        items = split_top_level(inner)
        if len(items) > 1 or (is_set and items[0]):
            return s2[0], s2[-1], items
    return None


def _matrix(s: str):
    """Rows of cells for `pmatrix`/`bmatrix`/`array` (also `[\\begin{array}..\\end{array}]`)."""
    if s[:1] in "([" and s[-1:] in ")]" and s[1:7] == "\\begin":
        s = s[1:-1]
    m = _MATRIX.match(s)
    if not m:
        return None
    body = m.group(2).replace("\\hline", "")
    rows = [split_top_level(r, "&") for r in body.split("\\\\")]
    return [r for r in rows if any(c for c in r)]


def _answer_side(s: str) -> Optional[str]:
    """The answer in an `=`/`\\approx` chain (its last side, normalised again), else None."""
    rc = relation_chain(s)
    if rc is None or any(op not in ("=", "\\approx") for op in rc[1]):
        return None
    items = split_top(s, _LIST_SEPS)[0]
    if len(items) > 1 and all(relation_chain(x) for x in items):
        return None  # `x=1, x=2`: a list of assignments, compared item by item
    parts = rc[0]
    k = rc[1].index("\\approx") if "\\approx" in rc[1] else -1
    if k > 0 and "=" in rc[1][:k]:  # `x = 1/3 \approx 0.33`: the exact value before rounding
        parts = parts[: k + 1]  # (`24000 \cdot 1.01^{30} \approx 32348` keeps its value)
    last = parts[-1]
    if _VAR.fullmatch(last) and len(parts) > 2:
        last = parts[-2]
    return normalize_answer(last)


def _vector(s: str) -> Optional[List[str]]:
    """The cells of a one-column or one-row matrix, else None."""
    m = _matrix(s)
    if m is None:
        return None
    if all(len(r) == 1 for r in m):
        return [r[0].strip() for r in m]
    return [c.strip() for c in m[0]] if len(m) == 1 else None


def _plain_list(s: str) -> List[str]:
    """Items of an unbracketed list (`1,2`, `1\\lor2`, `1\\pm\\sqrt{2}`)."""
    return _expand_pm([x for x in split_top(s, _LIST_SEPS)[0] if x])


def _expand_pm(items: List[str]) -> List[str]:
    """`1\\pm\\sqrt{5}` -> `1+\\sqrt{5}`, `1-\\sqrt{5}` (one `\\pm`/`\\mp` per item)."""
    out = []
    for x in items:
        if x.count("\\pm") == 1 or x.count("\\mp") == 1:
            op = "\\pm" if "\\pm" in x else "\\mp"
            out += [x.replace(op, "+"), x.replace(op, "-")]
        else:
            out.append(x)
    return out


@dataclass(frozen=True)
class Outcome:
    """One comparison: `reason` says why it is not equal when a step failed (a sympy timeout,
    an answer sympy could not parse), else ""."""

    eq: bool
    reason: str = ""


@dataclass
class _Ctx:
    """State of one comparison, passed down explicitly (no per-thread side channel)."""

    reason: str = ""
    timed_out: bool = False
    spent: float = 0.0


class Equivalence:
    """Equivalence of two answers; `checker` runs the sympy steps (jz3.eval.symbolic)."""

    def __init__(self, checker: Optional[SymbolicChecker] = None, use_sympy: bool = True):
        self._checker = checker
        self.use_sympy = use_sympy

    @property
    def checker(self) -> SymbolicChecker:
        if self._checker is None:
            self._checker = default_checker()
        return self._checker

    def compare(self, pred: str, gold: str) -> Outcome:
        """Are the two answers the same, and if not because a step failed, why."""
        if max(len(pred), len(gold)) > MAX_ANSWER_CHARS:
            eq = pred.strip() == gold.strip()
            return Outcome(eq, "" if eq else f"answer longer than {MAX_ANSWER_CHARS} characters")
        ctx = _Ctx()
        a, b = normalize_answer(pred), normalize_answer(gold)
        eq = self._equal(ctx, a, b, depth=0)
        return Outcome(eq, "" if eq else ctx.reason)

    def equal(self, pred: str, gold: str) -> bool:
        return self.compare(pred, gold).eq

    def _sympy(self, ctx: _Ctx, msg) -> bool:
        if not self.use_sympy or ctx.timed_out:  # one timeout per comparison at most
            return False
        flat = str(msg)
        if len(flat) > 3 * MAX_SYMPY_CHARS:
            ctx.reason = "answer too long for the symbolic check"
            return False
        checker = self.checker
        if ctx.spent > 2 * checker.timeout_s:
            ctx.reason = "symbolic budget of this comparison spent"
            return False  # many slow checks in one comparison (long lists): stop here
        t0 = time.monotonic()
        res = checker.check(msg)
        ctx.spent += time.monotonic() - t0
        if not res.eq and res.reason:
            ctx.reason = res.reason
        ctx.timed_out = res.reason.startswith("sympy timeout")
        return res.eq

    def _equal(self, ctx: _Ctx, a: str, b: str, depth: int) -> bool:
        if a == b:
            return True
        if not a or not b or depth > 6:
            return False
        if _WORDS.fullmatch(a) or _WORDS.fullmatch(b):  # text answers: never letters-as-symbols
            return a.lower() == b.lower()  # ("east" is not e*a*s*t == "seat")
        fa, fb = parse_number(a), parse_number(b)
        if fa is not None and fb is not None:
            return numbers_equal(a, b, fa, fb)
        # the output `x = 5+5+1 = 11`, `2c = 24`, `(a,b) = (-2,1)`, `7!\times2! = 10,\!080`
        # against a value: its last side is the answer (`... = 17 = x`: the side before `x`)
        last = _answer_side(a) if fb is not None or relation_chain(b) is None else None
        if last is not None:
            return self._equal(ctx, last, b, depth + 1)
        # subsets of the reals: intervals, unions, one-variable inequalities
        sa, sb = parse_real_set(a), parse_real_set(b)
        if (sa and (len(sa[1]) == 1 or not sa[1])) or (sb and (len(sb[1]) == 1 or not sb[1])):
            return self._sets_equal(ctx, a, b, depth)
        # tuples, intervals, sets
        ta, tb = _bracketed(a), _bracketed(b)
        if bool(ta and ta[0] == "(") != bool(tb and tb[0] == "("):  # a vector as a tuple
            vec = _vector(b if ta else a)
            t = ta or tb
            if vec is not None:
                pair = (t[2], vec) if ta else (vec, t[2])
                return len(vec) == len(t[2]) and all(
                    self._equal(ctx, x, y, depth + 1) for x, y in zip(*pair, strict=True))
        if ta or tb:
            return self._collections_equal(ctx, a, b, ta, tb, depth)
        ma, mb = _matrix(a), _matrix(b)
        if ma is not None or mb is not None:
            if ma is None or mb is None or [len(r) for r in ma] != [len(r) for r in mb]:
                return False
            return all(self._equal(ctx, x.strip(), y.strip(), depth + 1)
                       for ra, rb in zip(ma, mb, strict=True) for x, y in zip(ra, rb, strict=True))
        # unbracketed lists (all solutions), `a \pm b`, `1 \lor 2`: order does not matter
        la, lb = _plain_list(a), _plain_list(b)
        if len(la) > 1 or len(lb) > 1:
            if len(lb) == 1 and all(self._equal(ctx, x, b, depth + 1) for x in la):
                return True  # the same answer twice: `\\boxed{15\\frac{39}{40}}, or \\boxed{\\frac{639}{40}}`
            return self._multiset_equal(ctx, la, lb, depth)
        ra, rb = relation_chain(a), relation_chain(b)
        if ra or rb:
            if ra and rb:
                return self._relations_equal(ctx, ra, rb, depth)
            # a gold `y = 2x+3` against `2x+3`: only a one-letter left side is dropped (a gold
            # `4x-5y=-50` is not answered by `-50`)
            if rb and rb[1] == ["="] and _VAR.fullmatch(rb[0][0]):
                return self._equal(ctx, a, rb[0][1], depth + 1)
            return False
        if not (_LATEXY.search(a) or _LATEXY.search(b)):
            return False
        if fa is not None or fb is not None:  # a number vs an expression: the expression
            other = b if fa is not None else a  # must at least be free of letters
            if re.search(r"(?<!\\)\b[a-zA-Z]\b", other.replace("\\pi", "")):
                return False
        if len(a) > MAX_SYMPY_CHARS or len(b) > MAX_SYMPY_CHARS:
            ctx.reason = "answer too long for the symbolic check"
            return False
        return self._sympy(ctx, [a, b] if a <= b else [b, a])

    def _collections_equal(self, ctx: _Ctx, a, b, ta, tb, depth) -> bool:
        if ta and tb:
            if "{" in (ta[0], tb[0]):  # a set on one side: order does not matter
                if {ta[0], tb[0]} <= {"{", "("}:
                    return self._multiset_equal(ctx, _expand_pm(ta[2]), _expand_pm(tb[2]), depth)
                return False
            if ta[0] != tb[0] or ta[1] != tb[1] or len(ta[2]) != len(tb[2]):
                return False
            return all(self._equal(ctx, x, y, depth + 1) for x, y in zip(ta[2], tb[2], strict=True))
        t = ta or tb
        items = _plain_list(b if ta else a)
        tup = _expand_pm(t[2]) if t[0] == "{" else t[2]
        pair = (tup, items) if ta else (items, tup)  # (output side, gold side)
        if t[0] == "{":  # `\{1,2\}` vs `2, 1`
            return self._multiset_equal(ctx, pair[0], pair[1], depth)
        if t[0] == "(" and len(items) == len(tup) > 1:  # `(2,3)` vs `x=2, y=3`: in order
            return all(self._equal(ctx, x, y, depth + 1) for x, y in zip(*pair, strict=True))
        return False

    def _relations_equal(self, ctx: _Ctx, ra, rb, depth) -> bool:
        (pa, oa), (pb, ob) = ra, rb
        if len(pa) == len(pb):
            if oa == ob and all(self._equal(ctx, x, y, depth + 1) for x, y in zip(pa, pb, strict=True)):
                return True
            if [FLIP[o] for o in reversed(oa)] == ob and all(
                    self._equal(ctx, x, y, depth + 1) for x, y in zip(reversed(pa), pb, strict=True)):
                return True
        if len(pa) != 2 or len(pb) != 2:
            return False
        if not (variables(pa[0] + pa[1]) or variables(pb[0] + pb[1])):
            return False
        if oa == ob == ["="]:
            for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)):  # `x = 6` vs `x = 5`: no sympy needed
                if pa[i] == pb[j] and _VAR.fullmatch(pa[i]) and variables(pa[i]).isdisjoint(
                        variables(pa[1 - i] + pb[1 - j])):
                    return self._equal(ctx, pa[1 - i], pb[1 - j], depth + 1)
            return self._sympy(ctx, {"op": "eqn", "a": pa, "b": pb})
        if "=" in oa or "=" in ob or "\\approx" in oa + ob:
            return False
        return self._sympy(ctx, {"op": "ineq", "a": [pa[0], oa[0], pa[1]],
                            "b": [pb[0], ob[0], pb[1]]})

    def _sets_equal(self, ctx: _Ctx, a: str, b: str, depth: int) -> bool:
        pa, pb = parse_real_set(a, True), parse_real_set(b, True)
        if not pa or not pb:
            return False
        var = pa[1] | pb[1]
        if len(var) > 1:
            return False
        rel_a = any(p[0] == "rel" for p in pa[0])
        rel_b = any(p[0] == "rel" for p in pb[0])
        if not (rel_a or rel_b):
            if self._multiset_equal(ctx, pa[0], pb[0], depth, self._piece_equal):
                return True
            if len(pa[0]) == len(pb[0]):  # same number of pieces, one differs: not the same set
                return False
        return self._sympy(ctx, {"op": "set", "a": pa[0], "b": pb[0], "var": next(iter(var), "x")})

    def _piece_equal(self, ctx: _Ctx, p, q, depth: int) -> bool:
        if p[0] != q[0]:
            return False
        if p[0] == "interval":
            return p[3:] == q[3:] and self._equal(ctx, p[1], q[1], depth + 1) \
                and self._equal(ctx, p[2], q[2], depth + 1)
        if p[0] == "finite":
            return self._multiset_equal(ctx, p[1], q[1], depth)
        return p == q

    def _multiset_equal(self, ctx: _Ctx, la: list, lb: list, depth: int, eq=None) -> bool:
        eq = eq or self._equal
        if len(la) != len(lb):
            return False
        rest = list(lb)
        for x in la:
            for k, y in enumerate(rest):
                if eq(ctx, x, y, depth + 1):
                    del rest[k]
                    break
            else:
                return False
        return True
