"""Sandbox benchmark: executions per second through `SandboxPool` with every layer on (bubblewrap
jail, per-program namespaces, private read-only /dev, seccomp filter, fresh keyring, cgroup
memory/pids/CPU accounting, rlimits), fork server vs a fresh jailed interpreter per program.
Prints a JSON object last (`cgroups_missing` lists any limit no cgroup enforced: then the run
was not "every layer on").

    python -m jz3.bench.sandbox [--workers 2] [--n 120]
    python -m jz3.bench.grader --sandbox      # the same
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from typing import Dict

from jz3.config.eval import SandboxConfig
from jz3.eval.sandbox import SandboxPool, missing_cgroups, sandbox_mode

PROGRAMS = {
    "print": "print(1)",
    "sympy": "import sympy\nprint(sympy.sqrt(8))",
    "sympy_solve": ("import sympy as sp\nx = sp.Symbol('x')\n"
                    "print(sp.solve(x**2 - 5*x + 6, x), sp.Rational(7, 3) + sp.Rational(1, 6))"),
}


def _rate(pool: SandboxPool, code: str, k: int) -> Dict:
    t0 = time.perf_counter()
    res = pool.run_many([code] * k)
    dt = time.perf_counter() - t0
    return {"exec_per_s": round(k / dt, 2), "ok": sum(r.ok for r in res) == k}


def run(workers: int = 2, n: int = 120, per_exec_n: int = 12) -> Dict:
    limits = SandboxConfig(workers=workers)
    mode = sandbox_mode(limits)
    out: Dict = {"workers": workers, "jail": mode.reason if mode.ok else f"NONE: {mode.reason}",
                 "audit_hook": limits.audit_hook,
                 "cgroups_missing": list(missing_cgroups(limits))}
    with SandboxPool(limits) as pool:
        pool.run_many(["print(1)"] * workers)  # start the servers outside the timing
        for name, code in PROGRAMS.items():
            r = _rate(pool, code, n)
            out[f"fork_server_{name}_exec_per_s"], out[f"fork_server_{name}_ok"] = \
                r["exec_per_s"], r["ok"]
    with SandboxPool(replace(limits, fork_server=False)) as pool:  # one interpreter per program
        for name in ("print", "sympy"):
            r = _rate(pool, PROGRAMS[name], per_exec_n)
            out[f"per_exec_{name}_exec_per_s"], out[f"per_exec_{name}_ok"] = \
                r["exec_per_s"], r["ok"]
    out["sympy_speedup"] = round(out["fork_server_sympy_exec_per_s"]
                                 / max(out["per_exec_sympy_exec_per_s"], 1e-9), 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--n", type=int, default=120, help="programs per kind (fork server)")
    args = ap.parse_args()
    print(json.dumps(run(args.workers, args.n)))


if __name__ == "__main__":
    main()
