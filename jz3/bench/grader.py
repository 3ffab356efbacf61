"""Grader benchmark: our `is_correct` vs the math-verify package on the same (output, gold) pairs,
in the same process: the gold solutions of MATH500 and GSM8K (should all be right) and a perturbed
copy of each (should all be wrong). Prints a JSON object last; disagreements go to a side file.

    python -m jz3.bench.grader [--out runs/bench/grader] [--limit N]
    python -m jz3.bench.grader --sandbox     # executions/s of the tool-setting sandbox instead
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Callable, Dict, List

from tqdm import tqdm

from jz3.eval.grading import is_correct
from jz3.eval.loaders import load_benchmark
from jz3.paths import shared_data_dir


def _perturb(gold: str) -> str:
    m = list(re.finditer(r"\d+", gold))
    if m:
        x = m[0]  # the first number: `52_8` -> `53_8`, `864 inches^2` -> `865 inches^2`
        return gold[: x.start()] + str(int(x.group()) + 1) + gold[x.end():]
    return gold + "+1"


def build_pairs(limit: int | None = None) -> List[Dict]:
    data = shared_data_dir() / "benchmarks"
    pairs = []
    for bench in ("math-oai", "gsm8k"):
        for it in load_benchmark(bench, data, limit):
            ref = it.reference or ""
            pairs.append({"benchmark": bench, "idx": it.idx, "kind": "gold", "output": ref,
                          "gold": it.gold, "expected": True})
            if bench == "gsm8k":
                wrong = ref.rsplit("####", 1)[0] + "#### " + _perturb(it.gold)
            else:
                wrong = f"So the answer is $\\boxed{{{_perturb(it.gold)}}}$."
            pairs.append({"benchmark": bench, "idx": it.idx, "kind": "perturbed",
                          "output": wrong, "gold": it.gold, "expected": False})
    return pairs


def _math_verify() -> Callable[[str, str], bool]:
    from math_verify import parse, verify

    def grade(output: str, gold: str) -> bool:
        try:
            return bool(verify(parse(f"${gold}$"), parse(output)))
        except Exception:  # noqa: BLE001 - a crash inside math-verify counts as "wrong"
            return False

    return grade


def _timed(name: str, fn: Callable[[Dict], bool], pairs: List[Dict]) -> tuple:
    t0 = time.perf_counter()
    res = [fn(p) for p in tqdm(pairs, desc=name, unit="pair", leave=False)]
    return res, time.perf_counter() - t0


def bench_sandbox(workers: int = 2, n: int = 40) -> Dict:
    """Executions per second through `SandboxPool` (all layers on), trivial and sympy code."""
    from jz3.config.eval import SandboxConfig
    from jz3.eval.sandbox import SandboxPool, sandbox_interpreter

    out: Dict = {"workers": workers, "interpreter": sandbox_interpreter().exe}
    with SandboxPool(SandboxConfig(workers=workers)) as pool:
        pool.run_many(["print(1)"])
        for name, code, k in (("print", "print(1)", n),
                              ("sympy", "import sympy\nprint(sympy.sqrt(8))", n // 2)):
            t0 = time.perf_counter()
            res = pool.run_many([code] * k)
            dt = time.perf_counter() - t0
            out[f"{name}_exec_per_s"] = round(k / dt, 2)
            out[f"{name}_ok"] = sum(r.ok for r in res) == k
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/bench/grader")
    ap.add_argument("--limit", type=int, default=None, help="items per benchmark (default all)")
    ap.add_argument("--sandbox", action="store_true", help="benchmark the code sandbox instead")
    args = ap.parse_args()
    if args.sandbox:
        print(json.dumps(bench_sandbox()))
        return
    pairs = build_pairs(args.limit)
    mv = _math_verify()
    # warm both up (imports, our sympy helper, math-verify's grammar) outside the timing
    is_correct("\\boxed{\\frac{1}{2}}", "\\sqrt{2}/2", "math-oai")
    mv("\\boxed{\\frac{1}{2}}", "\\sqrt{2}/2")
    ours, t_ours = _timed("ours", lambda p: is_correct(p["output"], p["gold"], p["benchmark"]),
                          pairs)
    theirs, t_mv = _timed("math-verify", lambda p: mv(p["output"], p["gold"]), pairs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dis_path = out / "disagreements.jsonl"
    n_dis = 0
    with dis_path.open("w") as f:
        for p, a, b in zip(pairs, ours, theirs, strict=True):
            if a != b:
                n_dis += 1
                f.write(json.dumps({**p, "ours": a, "math_verify": b,
                                    "ours_right": a == p["expected"]}, ensure_ascii=False) + "\n")
    n = len(pairs)
    result = {
        "pairs": n,
        "answers_per_s": round(n / t_ours, 1),
        "math_verify_answers_per_s": round(n / t_mv, 1),
        "speedup_vs_math_verify": round(t_mv / t_ours, 2),
        "agreement_with_math_verify": round(sum(a == b for a, b in zip(ours, theirs,
                                                                       strict=True)) / n, 5),
        "ours_accuracy_vs_expected": round(
            sum(a == p["expected"] for p, a in zip(pairs, ours, strict=True)) / n, 5),
        "math_verify_accuracy_vs_expected": round(
            sum(b == p["expected"] for p, b in zip(pairs, theirs, strict=True)) / n, 5),
        "disagreements": n_dis,
        "disagreements_file": str(dis_path),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
