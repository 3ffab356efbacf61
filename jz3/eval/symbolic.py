"""Symbolic equivalence with sympy, run in a helper process so that a timeout works from any
thread (signals only work in the main thread) and a parse that explodes (`10^{10^{10}}`) is
killed instead of hanging the harness.

`SymbolicChecker.equal(a, b)` -> True / False; on timeout or crash the helper is killed, the pair
counts as not equal, and the helper restarts on the next call. The worker side
(`python -m jz3.eval.symbolic`) converts LaTeX to a sympy expression with a small converter
(`latex_to_sympy_str`) and checks `simplify(a - b) == 0`, floats taken as exact rationals.
"""

from __future__ import annotations

import json
import logging
import os
import re
import selectors
import subprocess
import sys
import threading
from typing import Dict, Optional, Tuple

log = logging.getLogger(__name__)

_FUNCS = ("arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "sin", "cos", "tan", "cot",
          "sec", "csc", "log", "ln", "exp")


def _match_brace(s: str, i: int) -> int:
    """Index of the `}` closing the `{` at s[i]."""
    depth = 0
    for k in range(i, len(s)):
        if s[k] == "{":
            depth += 1
        elif s[k] == "}":
            depth -= 1
            if depth == 0:
                return k
    raise ValueError(f"unbalanced braces in {s!r}")


def _group(s: str, i: int) -> Tuple[str, int]:
    """The argument starting at s[i]: a `{...}` group or one character; returns (arg, next i)."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        raise ValueError("missing argument")
    if s[i] == "{":
        j = _match_brace(s, i)
        return s[i + 1: j], j + 1
    if s[i] == "\\":
        m = re.match(r"\\[a-zA-Z]+", s[i:])
        assert m is not None
        return m.group(0), i + len(m.group(0))
    return s[i], i + 1


def _log_argument(s: str, i: int) -> Tuple[str, int]:
    """The argument after `\\log_b`: a `{...}` or `(...)` group, or a number/letter run."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i < len(s) and s[i] == "(":
        depth = 0
        for k in range(i, len(s)):
            depth += s[k] == "("
            depth -= s[k] == ")"
            if depth == 0:
                return s[i + 1: k], k + 1
        raise ValueError("unbalanced parentheses")
    if i < len(s) and s[i] in "{\\":
        return _group(s, i)
    m = re.match(r"[\w.]+", s[i:])
    if not m:
        raise ValueError("missing logarithm argument")
    return m.group(0), i + m.end()


def latex_to_sympy_str(s: str) -> str:
    """A LaTeX math answer as a sympy-parsable string (fractions, roots, powers, functions)."""
    out = []
    i = 0
    while i < len(s):
        if s.startswith("\\frac", i):
            num, i = _group(s, i + 5)
            den, i = _group(s, i)
            out.append(f"(({latex_to_sympy_str(num)})/({latex_to_sympy_str(den)}))")
            continue
        if s.startswith("\\sqrt", i):
            i += 5
            root = None
            if i < len(s) and s[i] == "[":
                j = s.index("]", i)
                root, i = s[i + 1: j], j + 1
            arg, i = _group(s, i)
            inner = latex_to_sympy_str(arg)
            out.append(f"(({inner})**(1/({latex_to_sympy_str(root)})))" if root else f"sqrt({inner})")
            continue
        if s.startswith(("\\binom", "\\dbinom", "\\tbinom"), i):
            i = s.index("binom", i) + 5
            n, i = _group(s, i)
            k, i = _group(s, i)
            out.append(f" binomial(({latex_to_sympy_str(n)}),({latex_to_sympy_str(k)}))")
            continue
        if s.startswith("\\log_", i):  # `\\log_2 8`, `\\log_{3}{81}`, `\\log_b(x+1)`
            base, i = _group(s, i + 5)
            arg, i = _log_argument(s, i)
            out.append(f" log(({latex_to_sympy_str(arg)}),({latex_to_sympy_str(base)}))")
            continue
        if s[i] == "\\":
            m = re.match(r"\\([a-zA-Z]+)", s[i:])
            name = m.group(1) if m else s[i + 1: i + 2]
            i += 1 + len(name)
            if name in ("pi",):
                out.append(" pi ")
            elif name == "infty":
                out.append(" oo ")
            elif name in ("cdot", "times"):
                out.append("*")
            elif name == "div":
                out.append("/")
            elif name in _FUNCS:
                out.append(" " + ("log" if name == "ln" else name.replace("arc", "a")) + " ")
            else:
                raise ValueError(f"unsupported LaTeX command \\{name}")
            continue
        ch = s[i]
        out.append({"{": "(", "}": ")", "^": "**"}.get(ch, ch))
        i += 1
    return "".join(out)


def _parse(s: str):
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        rationalize,
        standard_transformations,
    )

    text = latex_to_sympy_str(s)
    if re.search(r"[^\w\s+\-*/().,^]", text):
        raise ValueError(f"not an expression: {text!r}")
    transforms = standard_transformations + (implicit_multiplication_application, convert_xor,
                                             rationalize)
    return parse_expr(text, transformations=transforms, evaluate=True)


def sympy_equal(a: str, b: str) -> bool:
    """True when the two LaTeX expressions are symbolically equal (worker side)."""
    import sympy

    ea, eb = _parse(a), _parse(b)
    if ea.free_symbols != eb.free_symbols:
        return False
    diff = sympy.simplify(ea - eb)
    if diff == 0:
        return True
    if not diff.free_symbols:
        val = sympy.N(diff, 50)
        return bool(val.is_number and abs(val) < sympy.Float("1e-40"))
    return False


def _constant_ratio(fa, fb, positive: bool) -> bool:
    """Is fa / fb a (positive) constant? fa, fb: sympy expressions, fb not identically 0."""
    import sympy

    if fa == 0 or fb == 0:
        return False
    ratio = sympy.cancel(sympy.together(fa / fb))
    if ratio.free_symbols:
        ratio = sympy.simplify(ratio)
    if ratio.free_symbols or ratio == 0 or not ratio.is_number:
        return False
    return bool(ratio > 0) if positive else True


def equations_equal(a, b) -> bool:
    """`L1 = R1` vs `L2 = R2`: the same equation up to rearranging and scaling
    (L1 - R1 = c (L2 - R2), c a non-zero constant, same variables)."""
    fa = _parse(a[0]) - _parse(a[1])
    fb = _parse(b[0]) - _parse(b[1])
    if fa.free_symbols != fb.free_symbols or not fa.free_symbols:
        return False
    return _constant_ratio(fa, fb, positive=False)


_STRICT = {"<": True, ">": True, "\\le": False, "\\ge": False}


def inequalities_equal(a, b) -> bool:
    """`L op R` vs `L' op' R'` in several variables: after writing each as `f > 0` / `f >= 0`
    (`\\ne` as `f != 0`), the same strictness and f = c f' with c > 0."""

    def canon(rel):
        lhs, op, rhs = _parse(rel[0]), rel[1], _parse(rel[2])
        if op in ("<", "\\le"):
            return rhs - lhs, op
        return lhs - rhs, op

    (fa, opa), (fb, opb) = canon(a), canon(b)
    if fa.free_symbols != fb.free_symbols:
        return False
    if "\\ne" in (opa, opb):
        return opa == opb and _constant_ratio(fa, fb, positive=False)
    if _STRICT.get(opa) != _STRICT.get(opb):
        return False
    return _constant_ratio(fa, fb, positive=True)


def _real_set(pieces, var: str):
    import sympy

    x = sympy.Symbol(var or "x")
    rel = {"<": sympy.Lt, ">": sympy.Gt, "\\le": sympy.Le, "\\ge": sympy.Ge, "=": sympy.Eq,
           "\\ne": sympy.Ne}

    def one(p):
        kind = p[0]
        if kind == "empty":
            return sympy.S.EmptySet
        if kind == "interval":
            return sympy.Interval(_parse(p[1]), _parse(p[2]), p[3], p[4])
        if kind == "finite":
            return sympy.FiniteSet(*[_parse(e) for e in p[1]])
        if kind == "and":
            return sympy.Intersection(*[one(q) for q in p[1]])
        exprs = [_parse(q) for q in p[1]]
        out = sympy.S.Reals
        for i, op in enumerate(p[2]):
            cond = rel[op](exprs[i], exprs[i + 1])
            out = sympy.Intersection(out, sympy.solveset(cond, x, sympy.S.Reals))
        return out

    return sympy.Union(*[one(p) for p in pieces])


def sets_equal(a, b, var: str) -> bool:
    """Two subsets of the reals (pieces from `jz3.eval.relations.parse_real_set`)."""
    import sympy

    sa, sb = _real_set(a, var), _real_set(b, var)
    if sa == sb:
        return True
    return sympy.simplify(sa.symmetric_difference(sb)) == sympy.S.EmptySet


def _dispatch(msg) -> bool:
    if isinstance(msg, list):
        return sympy_equal(msg[0], msg[1])
    op = msg["op"]
    if op == "eqn":
        return equations_equal(msg["a"], msg["b"])
    if op == "ineq":
        return inequalities_equal(msg["a"], msg["b"])
    if op == "set":
        return sets_equal(msg["a"], msg["b"], msg.get("var", "x"))
    raise ValueError(f"unknown op {op!r}")


def _worker_main() -> None:  # pragma: no cover - runs in the helper process
    _limit_memory(int(os.environ.get("JZ3_SYMBOLIC_MEMORY_MB", "2048")))
    sys.setrecursionlimit(3000)
    import sympy  # noqa: F401 - imported before "ready" so that start-up is not timed as work
    import sympy.parsing.sympy_parser  # noqa: F401

    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            res: Dict[str, object] = {"eq": bool(_dispatch(msg)), "err": None}
        except (Exception, RecursionError) as e:  # noqa: BLE001 - a failure means "not equal"
            res = {"eq": False, "err": f"{type(e).__name__}: {e}"[:200]}
        sys.stdout.write(json.dumps(res) + "\n")
        sys.stdout.flush()


def _limit_memory(mb: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))


class SymbolicChecker:
    """A restartable sympy helper process; thread-safe; results cached."""

    def __init__(self, timeout_s: float = 5.0, memory_mb: int = 2048):
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self._proc: Optional[subprocess.Popen] = None
        self._lock = threading.Lock()
        self._cache: Dict[Tuple[str, str], bool] = {}
        self.timeouts = 0
        self.errors = 0
        self.calls = 0
        self.last_error: Optional[str] = None

    def _start(self, startup_timeout_s: float = 120.0) -> subprocess.Popen:
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   JZ3_SYMBOLIC_MEMORY_MB=str(self.memory_mb))
        proc = subprocess.Popen(
            [sys.executable, "-m", "jz3.eval.symbolic"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1, env=env,
            start_new_session=True,
        )
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            ready = sel.select(startup_timeout_s) and proc.stdout.readline().strip() == "ready"
        if not ready:
            proc.kill()
            proc.wait()
            raise RuntimeError("the sympy helper process did not start")
        return proc

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def equal(self, a: str, b: str) -> bool:
        """Are two LaTeX expressions symbolically equal?"""
        key = (a, b) if a <= b else (b, a)
        return self.check(list(key))

    def check(self, msg) -> bool:
        """Run one check in the helper: `[a, b]` (expressions) or `{"op": "eqn"|"ineq"|"set",
        "a": ..., "b": ...}`. False on timeout, crash or parse error (`last_error` says why)."""
        key = json.dumps(msg, sort_keys=True)
        if key in self._cache:
            return self._cache[key]
        with self._lock:
            self.calls += 1
            self.last_error = None
            if self._proc is None or self._proc.poll() is not None:
                try:
                    self._proc = self._start()
                except (RuntimeError, OSError) as e:
                    log.error("%s", e)
                    self.errors += 1
                    self.last_error = f"sympy helper: {e}"
                    return False
            proc = self._proc
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(key + "\n")
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                self._kill()
                self.errors += 1
                self.last_error = "sympy helper: broken pipe"
                return False
            sel = selectors.DefaultSelector()
            sel.register(proc.stdout, selectors.EVENT_READ)
            # the first call also pays the helper's start-up (importing sympy)
            ready = sel.select(self.timeout_s)
            sel.close()
            if not ready:
                log.warning("sympy timed out after %.1fs on %.200s", self.timeout_s, key)
                self.timeouts += 1
                self.last_error = f"sympy timeout after {self.timeout_s:.1f}s"
                self._kill()
                return False
            line = proc.stdout.readline()
            if not line:
                self.errors += 1
                self.last_error = "sympy helper died (memory limit?)"
                self._kill()
                return False
            res = json.loads(line)
            if res.get("err"):
                self.errors += 1
                self.last_error = str(res["err"])
            eq = bool(res["eq"])
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[key] = eq
        return eq

    def close(self) -> None:
        with self._lock:
            self._kill()


_default: Optional[SymbolicChecker] = None
_default_lock = threading.Lock()


def default_checker() -> SymbolicChecker:
    global _default
    with _default_lock:
        if _default is None:
            _default = SymbolicChecker()
        return _default


if __name__ == "__main__":
    _worker_main()
