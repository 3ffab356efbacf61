"""Grader benchmark: our `is_correct` vs the math-verify package on the same (output, gold) pairs,
in the same process: the gold solutions of MATH500 and GSM8K (should all be right) and a perturbed
copy of each (should all be wrong), timed; then the hard cases of `tests/data/grading_hard.jsonl`
(`tests.data.grading_hard`: no box, \\cfrac, thousands separators, units, choice letters, intervals,
inequalities, equations, chains, matrices, several boxes, sets vs tuples), where each grader's
agreement with the checked expected verdict is reported, overall and per kind; then every MATH500
reference solution with its box removed (recall of the final-sentence extraction); the same
pairs under `eval.grading: release`; every MATH train reference solution against its own box.
Prints a JSON object last; disagreements go to side files. The symbolic step runs in the jail
when bwrap works here (`symbolic_jailed`), and the timing includes it.

    python -m jz3.bench.grader [--out runs/bench/grader] [--limit N]
    python -m jz3.bench.grader --sandbox     # sandbox executions/s instead (bench.sandbox)
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

from tqdm import tqdm

from jz3.braces import boxed_spans
from jz3.config.eval import GradingMode
from jz3.eval.grading import grade, is_correct
from jz3.eval.loaders import load_benchmark
from jz3.eval.symbolic import default_checker
from jz3.paths import PROJECT_ROOT, shared_data_dir

# the hard grading cases: test data, built by tests/data/grading_hard.py
DATA_FILE = PROJECT_ROOT / "tests" / "data" / "grading_hard.jsonl"


def load_cases(path: Path = DATA_FILE) -> List[Dict]:
    with path.open() as f:
        return [json.loads(x) for x in f if x.strip()]


def boxes(text: str) -> List[Tuple[int, int, str]]:
    """(start, end, content) of every `\\boxed{...}` written with a brace, unstripped
    (jz3.braces)."""
    return [(s, e, text[s + 7: e - 1]) for s, e, _ in boxed_spans(text, ("\\boxed",))
            if text.startswith("\\boxed{", s)]


def math_train_rows() -> List[Dict]:
    """MATH train solutions with their last box as the gold (shared data)."""
    rows = []
    path = shared_data_dir() / "math_train" / "train.jsonl"
    for i, line in enumerate(path.open()):
        r = json.loads(line)
        b = boxes(r["solution"])
        if b:
            rows.append({"src": f"math_train:{i}", "solution": r["solution"], "gold": b[-1][2]})
    return rows


def math500_rows() -> List[Dict]:
    path = shared_data_dir() / "benchmarks" / "math-oai" / "test.jsonl"
    return [{"src": f"math500:{json.loads(x)['unique_id']}", **json.loads(x)}
            for x in path.open()]


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


def hard_agreement(mv: Callable[[str, str], bool], out: Path, path: Path = DATA_FILE) -> Dict:
    """Agreement of ours and of math-verify with the expected verdicts of the hard cases."""
    cases = load_cases(path)
    rows = []
    for c in tqdm(cases, desc="hard cases", unit="case", leave=False):
        v = grade(c["output"], c["gold"], "math-oai")
        rows.append((c, v, mv(c["output"], c["gold"])))
    kinds: Dict[str, List[int]] = {}
    with (out / "hard_disagreements.jsonl").open("w") as f:
        for c, v, m in rows:
            k = kinds.setdefault(c["kind"], [0, 0, 0])
            k[0] += 1
            k[1] += v.correct == c["expected"]
            k[2] += m == c["expected"]
            if v.correct != c["expected"] or m != c["expected"]:
                f.write(json.dumps({**c, "ours": v.correct, "ours_pred": v.pred,
                                    "ours_reason": v.reason, "math_verify": m},
                                   ensure_ascii=False) + "\n")
    n = len(rows)
    return {
        "hard_cases": n,
        "hard_expected_wrong": sum(not c["expected"] for c, _, _ in rows),
        "hard_agreement_ours": round(sum(v.correct == c["expected"] for c, v, _ in rows) / n, 4),
        "hard_agreement_math_verify": round(sum(m == c["expected"] for c, _, m in rows) / n, 4),
        "hard_by_kind": {k: {"n": a, "ours": round(b / a, 3), "math_verify": round(d / a, 3)}
                         for k, (a, b, d) in kinds.items()},
        "hard_disagreements_file": str(out / "hard_disagreements.jsonl"),
    }


def unboxed_recall(mv: Callable[[str, str], bool]) -> Dict:
    """Every MATH500 reference solution with its `\\boxed{}` removed (the answer stays where it
    was, unmarked): the share graded right by ours and by math-verify. Not all are recoverable:
    some solutions state the answer before a closing remark."""
    from jz3.braces import unbox

    rows = math500_rows()
    ours = theirs = 0
    for r in tqdm(rows, desc="MATH500 unboxed", unit="item", leave=False):
        out = unbox(r["solution"])
        ours += is_correct(out, r["answer"], "math-oai")
        theirs += mv(out, r["answer"])
    return {"math500_unboxed_items": len(rows),
            "math500_unboxed_recall_ours": round(ours / len(rows), 4),
            "math500_unboxed_recall_math_verify": round(theirs / len(rows), 4)}


def math_train_agreement(mv: Callable[[str, str], bool], out: Path) -> Dict:
    """The 4,500 MATH train reference solutions, each graded against its own last box: how
    often ours and math-verify call a reference solution right (both should: 1.0)."""

    rows = math_train_rows()
    ours = theirs = 0
    with (out / "math_train_misses.jsonl").open("w") as f:
        for r in tqdm(rows, desc="MATH train solutions", unit="item", leave=False):
            a, b = is_correct(r["solution"], r["gold"], "math-oai"), mv(r["solution"], r["gold"])
            ours += a
            theirs += b
            if not (a and b):
                f.write(json.dumps({**r, "ours": a, "math_verify": b}, ensure_ascii=False) + "\n")
    return {"math_train_solutions": len(rows),
            "math_train_right_ours": round(ours / len(rows), 4),
            "math_train_right_math_verify": round(theirs / len(rows), 4)}


def release_mode(pairs: List[Dict], ours: List[bool], out: Path) -> Dict:
    """`eval.grading: release` on the same pairs: its accuracy against the expected verdicts and
    the pairs whose verdict it changes (written to `release_flips.jsonl`)."""
    rel = [is_correct(p["output"], p["gold"], p["benchmark"], GradingMode.release)
           for p in tqdm(pairs, desc="release mode", unit="pair", leave=False)]
    flips = [(p, a, b) for p, a, b in zip(pairs, ours, rel, strict=True) if a != b]
    with (out / "release_flips.jsonl").open("w") as f:
        for p, a, b in flips:
            f.write(json.dumps({**p, "strict": a, "release": b}, ensure_ascii=False) + "\n")
    n = len(pairs)
    return {"release_accuracy_vs_expected": round(
                sum(b == p["expected"] for p, b in zip(pairs, rel, strict=True)) / n, 5),
            "release_vs_strict_flips": len(flips),
            "release_flips_file": str(out / "release_flips.jsonl")}


def _timed(name: str, fn: Callable[[Dict], bool], pairs: List[Dict]) -> tuple:
    t0 = time.perf_counter()
    res = [fn(p) for p in tqdm(pairs, desc=name, unit="pair", leave=False)]
    return res, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/bench/grader")
    ap.add_argument("--limit", type=int, default=None, help="items per benchmark (default all)")
    ap.add_argument("--sandbox", action="store_true", help="benchmark the code sandbox instead")
    args = ap.parse_args()
    if args.sandbox:  # the sandbox benchmark lives in bench.sandbox
        from jz3.bench.sandbox import run as bench_sandbox

        print(json.dumps(bench_sandbox()))
        return
    pairs = build_pairs(args.limit)
    mv = _math_verify()
    # warm both up (imports, our jailed sympy server, math-verify's grammar) outside the timing
    is_correct("\\boxed{\\frac{\\sqrt{3}}{3}}", "\\frac{1}{\\sqrt{3}}", "math-oai")
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
    checker = default_checker()
    result.update(symbolic_jailed=checker.jailed, symbolic_calls=checker.calls,
                  symbolic_screened=checker.screened)
    result.update(hard_agreement(mv, out))
    result.update(unboxed_recall(mv))
    result.update(release_mode(pairs, ours, out))
    result.update(math_train_agreement(mv, out))
    print(f"hard cases: ours {result['hard_agreement_ours']:.4f}, math-verify "
          f"{result['hard_agreement_math_verify']:.4f} on {result['hard_cases']}; speed "
          f"{result['speedup_vs_math_verify']}x math-verify on {n} MATH500/GSM8K pairs")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
