"""Answers that are relations or sets of reals, parsed from normalised strings (pure Python).

- `relation_chain("1<x\\le3")` -> (["1", "x", "3"], ["<", "\\le"]): top-level relation operators.
- `parse_real_set(s)` -> the pieces of a subset of the reals (`[2,5)`, `(-\\infty,0)\\cup(1,2]`,
  `x\\ge5`, `x<-1\\lor x>2`, `\\{1,2\\}`, `x\\ne3`) or None. The pieces go to the sympy helper
  (`jz3.eval.symbolic`, op "set"), which turns inequalities into sets with `solveset`.

Strings here are already normalised (`jz3.eval.normalize`): relations are spelt `\\le \\ge \\ne < > =`,
"or"/"and" between math are `\\lor`/`\\land`.
"""

from __future__ import annotations

import re
from typing import List, Optional, Tuple

OPS = ("\\le", "\\ge", "\\ne", "\\approx", "<", ">", "=")
FLIP = {"\\le": "\\ge", "\\ge": "\\le", "<": ">", ">": "<", "=": "=", "\\ne": "\\ne",
        "\\approx": "\\approx"}
_CMD = re.compile(r"\\[a-zA-Z]+")
_VAR = re.compile(r"[a-zA-Z]")
_CONSTANT_CMDS = {"\\pi", "\\infty", "\\frac", "\\sqrt", "\\cdot", "\\times", "\\sin", "\\cos",
                  "\\tan", "\\log", "\\ln", "\\exp", "\\div"}


def _op_at(s: str, i: int) -> Optional[str]:
    for op in OPS:
        if s.startswith(op, i):
            if op[0] == "\\" and i + len(op) < len(s) and s[i + len(op)].isalpha():
                return None  # `\left`, `\neq` already normalised, `\lessdot` ...
            return op
    return None


def split_top(s: str, seps: Tuple[str, ...]) -> Tuple[List[str], List[str]]:
    """Split on any of `seps` outside (), [], {} (a `\\{`/`\\}` counts as a bracket).
    Returns (parts, the separators found)."""
    parts, found, depth, start, i = [], [], 0, 0, 0
    while i < len(s):
        ch = s[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0:
            hit = None
            if seps is OPS:
                hit = _op_at(s, i)
            else:
                for sep in seps:
                    if s.startswith(sep, i) and not (
                            sep[0] == "\\" and i + len(sep) < len(s) and s[i + len(sep)].isalpha()):
                        hit = sep
                        break
            if hit:
                parts.append(s[start:i].strip())
                found.append(hit)
                i += len(hit)
                start = i
                continue
        i += 1
    parts.append(s[start:].strip())
    return parts, found


def relation_chain(s: str) -> Optional[Tuple[List[str], List[str]]]:
    """`a op b op c ...` at top level, every side non-empty; None when there is no relation."""
    parts, ops = split_top(s, OPS)
    if not ops or not all(parts):
        return None
    return parts, ops


def variables(s: str) -> set:
    """One-letter variables of an expression (LaTeX commands removed; `\\pi` is a constant)."""
    return set(_VAR.findall(_CMD.sub(" ", re.sub(r"_\{?\w+\}?", "", s))))


def _interval(s: str) -> Optional[tuple]:
    if len(s) < 5 or s[0] not in "([" or s[-1] not in ")]":
        return None
    inner = s[1:-1]
    depth = 0
    for ch in inner:  # the outer pair must enclose everything
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth < 0:
            return None
    parts, _ = split_top(inner, (",",))
    if len(parts) != 2 or not all(parts):
        return None
    return ("interval", parts[0], parts[1], s[0] == "(", s[-1] == ")")


def _finite(s: str) -> Optional[tuple]:
    if s.startswith("\\{") and s.endswith("\\}"):
        inner = s[2:-2]
        parts, _ = split_top(inner, (",",))
        return ("finite", [p for p in parts if p])
    return None


def is_interval_notation(s: str) -> bool:
    """A union of intervals (and finite sets) that cannot be a point or a tuple: it has
    `\\infty`, `\\cup`, or a half-open `[a,b)`."""
    pieces, _ = split_top(s, ("\\cup",))
    kinds = [_interval(p) or _finite(p) for p in pieces]
    if not all(kinds) or not any(k[0] == "interval" for k in kinds):
        return False
    return len(pieces) > 1 or "\\infty" in s or (s[0] == "[") != (s[-1] == "]")


def _relation_piece(s: str) -> Optional[tuple]:
    """A relation chain (`x\\ge5`, `1<x\\le3`, `x=-1`) as a piece of a set of reals."""
    rc = relation_chain(s)
    return None if rc is None or "\\approx" in rc[1] else ("rel", rc[0], rc[1])


def parse_real_set(s: str, allow_plain_interval: bool = False) -> Optional[Tuple[list, set]]:
    """(pieces, variables) for a subset of the reals written as intervals, unions, finite sets or
    inequalities in one variable; None if `s` is not one. `(a,b)` and `[a,b]` count as intervals
    only with `allow_plain_interval` (they may be a point or a closed pair otherwise)."""
    if s in ("\\emptyset", "\\varnothing", "\\{\\}"):
        return [("empty",)], set()
    union_parts, _ = split_top(s, ("\\cup", "\\lor"))
    pieces: list = []
    vars_: set = set()
    has_rel = False
    for part in union_parts:
        if not part:
            return None
        and_parts, _ = split_top(part, ("\\land",))
        conj = []
        for p in and_parts:
            piece = _interval(p) or _finite(p) or _relation_piece(p)
            if piece is None:
                # `x<-1, x>2`: a comma between inequalities in one variable means "or"
                sub, _ = split_top(p, (",",))
                subs = [_relation_piece(x) for x in sub] if len(sub) > 1 else [None]
                if not all(subs):
                    return None
                for q in subs:
                    vars_ |= set().union(*(variables(x) for x in q[1]))
                pieces.extend(subs)
                has_rel = has_rel or any(op != "=" for q in subs for op in q[2])
                continue
            if piece[0] == "rel":
                has_rel = has_rel or any(op != "=" for op in piece[2])
                vars_ |= set().union(*(variables(x) for x in piece[1]))
            else:
                for x in (piece[1:3] if piece[0] == "interval" else piece[1]):
                    if variables(x):
                        return None  # endpoints/elements must be constants
            conj.append(piece)
        if conj:
            pieces.append(("and", conj) if len(conj) > 1 else conj[0])
    if len(vars_) > 1:
        return None
    if not has_rel and not allow_plain_interval and not is_interval_notation(s):
        return None
    return pieces, vars_
