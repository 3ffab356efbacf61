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
                out.append(" " + ("log" if name == "ln" else name.replace("arc", "a")))
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


def _worker_main() -> None:  # pragma: no cover - runs in the helper process
    _limit_memory(int(os.environ.get("JZ3_SYMBOLIC_MEMORY_MB", "2048")))
    import sympy  # noqa: F401 - imported before "ready" so that start-up is not timed as work
    import sympy.parsing.sympy_parser  # noqa: F401

    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        a, b = json.loads(line)
        try:
            res: Dict[str, object] = {"eq": sympy_equal(a, b), "err": None}
        except Exception as e:  # noqa: BLE001 - every parse failure is an answer: "not equal"
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
        key = (a, b) if a <= b else (b, a)
        if key in self._cache:
            return self._cache[key]
        with self._lock:
            self.calls += 1
            if self._proc is None or self._proc.poll() is not None:
                try:
                    self._proc = self._start()
                except RuntimeError as e:
                    log.error("%s", e)
                    self.errors += 1
                    return False
            proc = self._proc
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps([a, b]) + "\n")
                proc.stdin.flush()
            except BrokenPipeError:
                self._kill()
                self.errors += 1
                return False
            sel = selectors.DefaultSelector()
            sel.register(proc.stdout, selectors.EVENT_READ)
            # the first call also pays the helper's start-up (importing sympy)
            ready = sel.select(self.timeout_s)
            sel.close()
            if not ready:
                log.warning("sympy timed out after %.1fs on %r vs %r", self.timeout_s, a, b)
                self.timeouts += 1
                self._kill()
                return False
            line = proc.stdout.readline()
            if not line:
                self.errors += 1
                self._kill()
                return False
            res = json.loads(line)
            if res.get("err"):
                self.errors += 1
            eq = bool(res["eq"])
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
