"""Symbolic equivalence with sympy, behind two walls.

1. The text never reaches an evaluator: `jz3.eval.mathtree` parses each side with its own grammar
   (with size, depth and number limits) into a data-only tree, here, on the host.
2. The trees are compared by `jz3.eval.sympy_build` (sympy constructors, refusing huge powers,
   factorials and binomials) inside the sandbox's bubblewrap jail: a fork server with that module
   preloaded (jz3.eval.forkserver) forks one namespaced, rlimited child per comparison and kills
   it at the timeout. Where no jail can be set up (no bwrap), the same module runs in a local
   helper process with a memory limit and a timeout (logged once).

Before either, two expressions are evaluated numerically from their trees (jz3.eval.mathtree,
`cmath` over the tree) at a few sample points: clearly different values settle "not equal" on
the host without sympy; only possibly-equal pairs go to the jail.

`SymbolicChecker.check(msg)` -> `SymResult(eq, reason)`; never raises. A parse error, a refused
bomb, a timeout or a crash is "not equal" with its reason. Results are cached.
"""

from __future__ import annotations

import json
import logging
import math
import os
import selectors
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from jz3.eval.mathtree import (
    MathParseError,
    numerically_different,
    parse_math,
    sets_numerically_different,
)
from jz3.eval.normalize import parse_number

log = logging.getLogger(__name__)
_BUILD_SRC = Path(__file__).with_name("sympy_build.py").read_text()
_MODULE = "jz3_sympy_build"
# run once in the jailed server: the builder becomes an importable module of every child.
# The exec'd text is this package's own sympy_build.py, read from disk here; model text only
# ever reaches the jail as a data-only parse tree (mathtree), never as code.
_WARMUP = (f"\nimport sys as _s, types as _t\n_m = _t.ModuleType({_MODULE!r})\n"
           f"exec(compile({_BUILD_SRC!r}, {_MODULE!r}, 'exec'), _m.__dict__)\n"
           f"_s.modules[{_MODULE!r}] = _m\n"
           "_m.check({'op': 'expr', 'a': ['+', ['s', 'x'], ['n', '1']], 'b': ['n', '2']})\n")
_warned_local = False


@dataclass(frozen=True)
class SymResult:
    eq: bool
    reason: str = ""  # why not equal when something failed (parse error, timeout, crash)


def _tree(s: str) -> list:
    """The parse tree of one side; a plain number (`1e-5`, `3/4`, `2\\frac{1}{2}`) exactly."""
    f = parse_number(s)
    if f is None:
        return parse_math(s)
    num = ["n", str(abs(f.numerator))]
    tree = num if f.denominator == 1 else ["/", num, ["n", str(f.denominator)]]
    return ["neg", tree] if f < 0 else tree


def _trees(msg) -> Dict[str, Any]:
    """The message with every expression string parsed into a tree (host side, no evaluation).
    `[a, b]` | {"op": "eqn"|"ineq"|"set", "a": ..., "b": ...} (jz3.eval.equivalence)."""
    if isinstance(msg, list):
        return {"op": "expr", "a": _tree(msg[0]), "b": _tree(msg[1])}
    op = msg["op"]
    if op == "eqn":
        side = lambda r: [_tree(r[0]), _tree(r[1])]  # noqa: E731
    elif op == "ineq":
        side = lambda r: [_tree(r[0]), r[1], _tree(r[2])]  # noqa: E731
    elif op == "set":
        side = lambda ps: [_piece(p) for p in ps]  # noqa: E731
    else:
        raise ValueError(f"unknown op {op!r}")
    out = {"op": op, "a": side(msg["a"]), "b": side(msg["b"])}
    if op == "set":
        out["var"] = msg.get("var") or "x"
    return out


def _piece(p) -> list:
    kind = p[0]
    if kind == "empty":
        return ["empty"]
    if kind == "interval":
        return ["interval", _tree(p[1]), _tree(p[2]), bool(p[3]), bool(p[4])]
    if kind == "finite":
        return ["finite", [_tree(e) for e in p[1]]]
    if kind == "and":
        return ["and", [_piece(q) for q in p[1]]]
    if kind == "rel":
        return ["rel", [_tree(e) for e in p[1]], list(p[2])]
    raise ValueError(f"unknown set piece {kind!r}")


def _jail_mode():
    """The sandbox's jail here (jz3.eval.sandbox.sandbox_mode), or None with the reason."""
    from jz3.config.eval import SandboxConfig
    from jz3.eval.sandbox import sandbox_mode

    mode = sandbox_mode(SandboxConfig())
    return (mode, "") if mode.ok else (None, mode.reason)


class SymbolicChecker:
    """Thread-safe; `jail=None` uses the jail when there is one, `True` requires it, `False`
    uses the local helper process."""

    def __init__(self, timeout_s: float = 5.0, memory_mb: int = 1024,
                 jail: Optional[bool] = None):
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self._want_jail = jail
        self._mode: Any = None
        self._decided = False
        self._proc: Optional[subprocess.Popen] = None
        self._lock = threading.Lock()
        self._cache: Dict[str, SymResult] = {}
        self.timeouts = 0
        self.errors = 0
        self.calls = 0
        self.screened = 0

    # ------------------------------------------------------------------ public
    @property
    def jailed(self) -> bool:
        self._decide()
        return self._mode is not None

    def equal(self, a: str, b: str) -> bool:
        """Are two LaTeX expressions symbolically equal?"""
        return self.check([a, b] if a <= b else [b, a]).eq

    def check(self, msg) -> SymResult:
        """One comparison: `[a, b]` (expressions) or `{"op": "eqn"|"ineq"|"set", "a": ...,
        "b": ...}`. Not equal, with the reason, on a parse error, timeout or crash."""
        try:
            tree_msg = _trees(msg)
        except (MathParseError, ValueError, TypeError, IndexError, KeyError) as e:
            return SymResult(False, f"not parsable as math: {e}"[:300])
        key = json.dumps(tree_msg, sort_keys=True)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if (tree_msg["op"] == "expr" and numerically_different(tree_msg["a"], tree_msg["b"])) \
                or (tree_msg["op"] == "set" and sets_numerically_different(
                    tree_msg["a"], tree_msg["b"], tree_msg["var"])):
            self.screened += 1  # different values / members at a sample point: no sympy needed
            return SymResult(False, "")
        self._decide()
        self.calls += 1
        res = self._run_jailed(key) if self._mode is not None else self._run_local(key)
        if res.reason.startswith("sympy timeout"):
            self.timeouts += 1
        elif res.reason:
            self.errors += 1
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[key] = res
        return res

    def close(self) -> None:
        with self._lock:
            self._kill()

    # ------------------------------------------------------------------ the jail
    def _decide(self) -> None:
        global _warned_local
        if self._decided:
            return
        with self._lock:
            if self._decided:
                return
            mode, why = (None, "disabled") if self._want_jail is False else _jail_mode()
            if mode is None and self._want_jail:
                raise RuntimeError(f"no jail for the symbolic check: {why}")
            if mode is None and self._want_jail is None and not _warned_local:
                _warned_local = True
                log.warning("symbolic grading runs in a local helper process, not in the jail "
                            "(%s); answers are parsed by jz3's own grammar, never evaluated", why)
            self._mode, self._decided = mode, True

    def _run_jailed(self, key: str) -> SymResult:
        from jz3.eval.forkserver import POOL, ForkServer, ServerError

        mode = self._mode
        req = {"code": f"import {_MODULE} as _b\n_b.main({key!r})\n",
               "cpu_time_s": max(1, math.ceil(self.timeout_s)), "wall_time_s": self.timeout_s,
               "memory_mb": self.memory_mb, "max_file_mb": 1, "max_procs": 4,
               "max_output_bytes": 4096, "audit_hook": True, "tmpfs_mb": 16}
        try:
            with POOL.server(("jz3-symbolic", mode), lambda: ForkServer(
                    ("sympy",), True, mode.uid, mode.python, mode.sys_path, tag="jz3-symbolic",
                    warmup=_WARMUP)) as srv:
                rep = srv.run(req)
        except (ServerError, OSError, RuntimeError) as e:
            return SymResult(False, f"symbolic jail error: {e}"[:300])
        if rep.get("timed_out") or (rep.get("utime", 0) + rep.get("stime", 0)
                                    >= self.timeout_s and rep.get("signal")):
            return SymResult(False, f"sympy timeout after {self.timeout_s:.1f}s")
        if rep.get("harness_error"):
            return SymResult(False, f"symbolic jail error: {rep['harness_error']}"[:300])
        return self._answer(rep.get("stdout", ""), rep.get("stderr", "") or
                            f"exit {rep.get('exit')} signal {rep.get('signal')}")

    @staticmethod
    def _answer(stdout: str, failure: str) -> SymResult:
        lines = stdout.strip().splitlines()
        try:
            res = json.loads(lines[-1]) if lines else None
        except ValueError:
            res = None
        if not isinstance(res, dict):
            tail = (failure.strip().splitlines() or ["no answer"])[-1]
            return SymResult(False, f"sympy helper died: {tail}"[:300])
        err = res.get("err")
        return SymResult(bool(res.get("eq")), str(err)[:300] if err else "")

    # ------------------------------------------------------------------ no jail
    def _start(self, startup_timeout_s: float = 120.0) -> subprocess.Popen:
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1",
               "OPENBLAS_NUM_THREADS": "1", "JZ3_SYMBOLIC_MEMORY_MB": str(self.memory_mb + 1024)}
        proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _BUILD_SRC], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1, env=env,
            start_new_session=True, cwd="/")
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

    def _run_local(self, key: str) -> SymResult:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                try:
                    self._proc = self._start()
                except (RuntimeError, OSError) as e:
                    return SymResult(False, f"sympy helper: {e}")
            proc = self._proc
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(key + "\n")
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                self._kill()
                return SymResult(False, "sympy helper: broken pipe")
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                ready = sel.select(self.timeout_s)
            if not ready:
                log.warning("sympy timed out after %.1fs on %.200s", self.timeout_s, key)
                self._kill()
                return SymResult(False, f"sympy timeout after {self.timeout_s:.1f}s")
            line = proc.stdout.readline()
            if not line:
                self._kill()
                return SymResult(False, "sympy helper died (memory limit?)")
            return self._answer(line, "")


_default: Optional[SymbolicChecker] = None
_default_lock = threading.Lock()


def default_checker() -> SymbolicChecker:
    global _default
    with _default_lock:
        if _default is None:
            _default = SymbolicChecker(timeout_s=float(os.environ.get("JZ3_SYMBOLIC_TIMEOUT_S",
                                                                      "5")))
        return _default
