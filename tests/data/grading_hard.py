"""Build the hard grading cases, `tests/data/grading_hard.jsonl`: (output, gold, expected)
triples for the answer kinds that easy gold-vs-perturbed pairs miss.

Every case starts from real text in `../shared/data` (MATH train/MATH500 solutions and answers,
Minerva answers, JiuZhang3.0 synthetic solutions) and is rewritten by a rule whose verdict is
known by construction: an equivalent notation (expected right) or a changed value, bracket,
direction or order (expected wrong). Equation and inequality rewrites are made with sympy objects
(rearranged, scaled, solved for y) and their verdict asserted with sympy here, independently of
the grader. The file is test data (read by `tests/test_grading_hard_set.py` and
`jz3.bench.grader`, not shipped with the package); rebuild it with

    python -m tests.data.grading_hard [--out tests/data/grading_hard.jsonl]

Fields: id, kind, source, how (the rewrite), output, gold, expected.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from jz3.bench.grader import DATA_FILE, boxes, math500_rows, math_train_rows
from jz3.braces import unbox
from jz3.paths import shared_data_dir

GE, LE, GEQ, LEQ, GT = "\\ge", "\\le", "\\geq", "\\leq", "\\gt"
KINDS = ("final_sentence", "chained_equality", "cfrac", "thousands", "units", "choice_letter",
         "interval", "inequality", "equation", "matrix", "multi_boxed", "set_tuple", "other",
         "bare_formula", "stated_value", "final_after_box", "spaced_thousands", "approx_chain")


# ----------------------------------------------------------------------------- sources
def _minerva() -> List[Dict]:
    path = shared_data_dir() / "benchmarks" / "minerva_math" / "test.jsonl"
    out = []
    for i, line in enumerate(path.open()):
        r = json.loads(line)
        b = boxes(r["solution"])
        if b:
            out.append({"src": f"minerva_math:{i}", "solution": r["solution"], "gold": b[-1][2]})
    return out


def _jiuzhang() -> List[Dict]:
    path = shared_data_dir() / "jiuzhang3_samples" / "cot_pretrain_sampled.jsonl"
    out = []
    for i, line in enumerate(path.open()):
        r = json.loads(line)
        b = boxes(r["output"])
        if b:
            out.append({"src": f"jiuzhang3_cot:{i}", "solution": r["output"], "gold": b[-1][2]})
    return out


def _bump(ans: str) -> Optional[str]:
    """The answer with its first integer increased by 1 (a different value for the integer and
    simple-fraction answers this is used on), None if it has no integer."""
    m = re.search(r"\d+", ans)
    return None if m is None else ans[: m.start()] + str(int(m.group()) + 1) + ans[m.end():]


_SIMPLE = re.compile(r"-?\d+|-?\\frac\{\d+\}\{\d+\}|-?\d+\.\d+")


def _case(kind, src, how, output, gold, expected) -> Dict:
    return {"kind": kind, "source": src, "how": how, "output": output, "gold": gold,
            "expected": bool(expected)}


# ----------------------------------------------------------------------------- kinds
def final_sentence(rng: random.Random) -> Iterator[Dict]:
    """Real solutions whose answer sits in the last formula, with every box removed: the grader
    must read the final sentence's formula (e.g. "... so $x = 5$."). Wrong copies: the answer in
    that formula bumped by one."""
    pool = []
    for r in math_train_rows() + _jiuzhang():
        sol, gold = r["solution"], r["gold"]
        b = boxes(sol)
        tail = sol[b[-1][1]:]
        if not _SIMPLE.fullmatch(gold) or re.search(r"\d", tail) or len(tail) > 40:
            continue
        if "answer is" in sol.lower() or len(sol) > 2500:
            continue
        head = sol[: b[-1][0]]
        if head.count("$") % 2 == 0 and "\\[" not in head[-200:] and "\\(" not in head[-200:]:
            continue  # the box is not inside a formula: no final formula to read
        pool.append(r)
    rng.shuffle(pool)
    for r in pool[:27]:
        yield _case("final_sentence", r["src"], "all \\boxed{} removed", unbox(r["solution"]),
                    r["gold"], True)
    for r in pool[27:42]:
        sol = r["solution"]
        s, e, c = boxes(sol)[-1]
        wrong = sol[:s] + _bump(c) + sol[e:]
        yield _case("final_sentence", r["src"], "boxes removed, final answer bumped by 1",
                    unbox(wrong), r["gold"], False)
    # the issue's own shape: an inequality in the final sentence
    yield _case("final_sentence", "issue-13", "inequality in the final sentence",
                "Solving $2x - 3 \\geq 7$ gives $2x \\geq 10$.\nTherefore $x \\geq 5$ is the "
                "solution.", "[5,\\infty)", True)
    yield _case("final_sentence", "issue-13", "inequality in the final sentence, wrong end",
                "Solving $2x - 3 \\geq 7$ gives $2x \\geq 10$.\nTherefore $x \\geq 10$ is the "
                "solution.", "[5,\\infty)", False)


def chained_equality(rng: random.Random) -> Iterator[Dict]:
    """`$A = B = \\boxed{C}$` in real solutions: unboxed (`x = 5+5+1 = 11`), or the whole chain
    boxed; wrong copies have the last side bumped."""
    pool = []
    for r in math_train_rows():
        sol, gold = r["solution"], r["gold"]
        s, e, c = boxes(sol)[-1]
        pre = sol[max(0, s - 200): s]
        m = re.search(r"\$([^$]*=[^$]*=\s*)$", pre)
        if not m or not _SIMPLE.fullmatch(gold) or re.search(r"\d", sol[e:]):
            continue
        if "\\boxed" in m.group(1) or "\\\\" in m.group(1) or len(boxes(sol)) > 1:
            continue
        pool.append((r, m.group(1)))
    rng.shuffle(pool)
    for r, _ in pool[:10]:
        yield _case("chained_equality", r["src"], "boxes removed: the chain ends the text",
                    unbox(r["solution"]), r["gold"], True)
    for r, lhs in pool[10:20]:
        out = f"Putting it together, $\\boxed{{{lhs.strip()} {r['gold']}}}$."
        yield _case("chained_equality", r["src"], "the whole chain boxed", out, r["gold"], True)
    for r, _ in pool[20:31]:
        sol = r["solution"]
        s, e, c = boxes(sol)[-1]
        out = unbox(sol[:s] + _bump(c) + sol[e:])
        yield _case("chained_equality", r["src"], "chain's last side bumped (no box)", out,
                    r["gold"], False)
    yield _case("chained_equality", "issue-13", "the issue's example", "We count the cases: "
                "$x = 5+5+1 = 11$.", "11", True)
    yield _case("chained_equality", "issue-13", "an earlier side equals the gold, the last not",
                "So $x = 11 + 1 = 12$.", "11", False)


def cfrac(rng: random.Random) -> Iterator[Dict]:
    fr = [r for r in math_train_rows() if re.fullmatch(r"\\frac\{\d+\}\{\d+\}", r["gold"])]
    rng.shuffle(fr)
    for r in fr[:6]:
        a, b = re.findall(r"\d+", r["gold"])
        yield _case("cfrac", r["src"], "\\frac -> \\cfrac",
                    f"Hence the value is $\\boxed{{\\cfrac{{{a}}}{{{b}}}}}$.", r["gold"], True)
        if a != b:
            yield _case("cfrac", r["src"], "\\cfrac upside down",
                        f"Hence the value is $\\boxed{{\\cfrac{{{b}}}{{{a}}}}}$.", r["gold"],
                        False)
    for k, (p, q) in enumerate([(2, 3), (1, 4), (3, 2), (2, 5)]):  # continued fractions
        val = 1 + Fraction(1, p + Fraction(1, q))
        latex = f"1+\\cfrac{{1}}{{{p}+\\cfrac{{1}}{{{q}}}}}"
        gold = f"\\frac{{{val.numerator}}}{{{val.denominator}}}"
        yield _case("cfrac", f"constructed:{k}", "continued fraction = its value",
                    f"The expression is $\\boxed{{{latex}}}$.", gold, True)
        yield _case("cfrac", f"constructed:{k}", "continued fraction vs a wrong value",
                    f"The expression is $\\boxed{{{latex}}}$.",
                    f"\\frac{{{val.numerator + 1}}}{{{val.denominator}}}", False)
    yield _case("cfrac", "math_train gold \\cfrac{25}{16}", "exact decimal",
                "The ratio is $\\boxed{1.5625}$.", "\\cfrac{25}{16}", True)
    yield _case("cfrac", "math_train gold \\cfrac{25}{16}", "rounded decimal",
                "The ratio is $\\boxed{1.56}$.", "\\cfrac{25}{16}", False)


def thousands(rng: random.Random) -> Iterator[Dict]:
    golds = []
    for r in math_train_rows() + [{"src": x["src"], "gold": x["answer"]} for x in math500_rows()]:
        g = r["gold"]
        if re.fullmatch(r"\\?\$?\d{1,3}(?:(?:,\\!\s?|\{,\})\d{3})+", g):
            golds.append((r["src"], g))
    rng.shuffle(golds)
    for k, (src, g) in enumerate(golds[:20]):
        digits = re.sub(r"\D", "", g)
        groups = f"{int(digits):,}".split(",")
        form = k % 4
        if form == 0:
            pred = ",\\! ".join(groups)
        elif form == 1:
            pred = "{,}".join(groups)
        elif form == 2:
            pred = digits
        else:
            pred = ",".join(groups)
        if k % 3 == 2:  # wrong: last group changed
            wrong = f"{int(digits) + 1:,}".split(",")
            pred = [",\\! ".join(wrong), "{,}".join(wrong), str(int(digits) + 1),
                    ",".join(wrong)][form]
            yield _case("thousands", src, "grouped number off by one",
                        f"So the total is $\\boxed{{{pred}}}$.", g, False)
        else:
            yield _case("thousands", src, f"separator style {form}",
                        f"So the total is $\\boxed{{{pred}}}$.", g, True)
        if k < 6:  # the reverse direction: plain gold, grouped output
            yield _case("thousands", src, "grouped output, plain gold",
                        f"There are $\\boxed{{{'{,}'.join(groups)}}}$ of them.", digits, True)
    yield _case("thousands", "issue-13", "issue example 11,\\! 111",
                "The sum is $\\boxed{11,\\! 111}$.", "11111", True)
    yield _case("thousands", "issue-13", "issue example 32{,}349",
                "The number is $\\boxed{32{,}349}$.", "32349", True)
    yield _case("thousands", "constructed", "a pair is not a grouped number",
                "The point is $\\boxed{(32, 349)}$.", "32349", False)
    yield _case("thousands", "constructed", "dropped group", "The total is $\\boxed{32}$.",
                "32{,}349", False)


_UNIT = re.compile(r"^(\d+(?:\.\d+)?)\s*\\(text|mbox|textnormal|mathrm)\{\s*([a-zA-Z. ]+?)\s*\}"
                   r"(\^\d|\^\{\d\})?$")


def units(rng: random.Random) -> Iterator[Dict]:
    pool = []
    for r in math_train_rows():
        m = _UNIT.match(r["gold"])
        if m and " and " not in r["gold"]:
            pool.append((r, m))
    rng.shuffle(pool)
    wraps = ["\\text{{ {u}}}", "\\textnormal{{ {u}}}", "\\mbox{{ {u}}}", "\\ \\mathrm{{{u}}}",
             "\\,\\text{{{u}}}"]
    for k, (r, m) in enumerate(pool[:24]):
        num, unit, exp = m.group(1), m.group(3).strip(), m.group(4) or ""
        w = wraps[k % len(wraps)].format(u=unit) + exp
        if k % 3 == 2:
            bad = str(int(float(num)) + 1)
            yield _case("units", r["src"], "wrong number, same unit",
                        f"Therefore the answer is $\\boxed{{{bad}{w}}}$.", r["gold"], False)
        elif k % 3 == 1:
            yield _case("units", r["src"], "number without the unit",
                        f"Therefore the answer is $\\boxed{{{num}}}$.", r["gold"], True)
        else:
            yield _case("units", r["src"], "unit in another text command",
                        f"Therefore the answer is $\\boxed{{{num}{w}}}$.", num, True)
    for k, r in enumerate(_minerva()[:60]):
        if re.fullmatch(r"\d+", r["gold"]) and k % 2 == 0:
            yield _case("units", r["src"], "Minerva unit \\mathrm{~m}",
                        f"Final Answer: The final answer is ${r['gold']} \\mathrm{{~m}}$. I hope "
                        "it is correct.", r["gold"], True)


def choice_letter(rng: random.Random) -> Iterator[Dict]:
    pool = [r for r in math_train_rows() if re.fullmatch(r"\\text\{\s*\([A-E]\)\s*\}", r["gold"])]
    rng.shuffle(pool)
    forms = ["\\text{{({L})}}", "({L})", "{L}", "\\textbf{{({L})}}", "\\mathrm{{({L})}}",
             "\\text{{{L}}}"]
    for k, r in enumerate(pool):
        letter = re.search(r"[A-E]", r["gold"]).group()
        f = forms[k % len(forms)]
        yield _case("choice_letter", r["src"], "letter written differently",
                    f"Checking every option, the answer is $\\boxed{{{f.format(L=letter)}}}$.",
                    r["gold"], True)
        other = "ABCDE"[("ABCDE".index(letter) + 1 + k % 3) % 5]
        if k % 2 == 0:
            yield _case("choice_letter", r["src"], "another letter",
                        f"So the answer is $\\boxed{{{f.format(L=other)}}}$.", r["gold"], False)


# intervals: parsed by this builder (not by the grader) into (lo, hi, lo_closed, hi_closed)
def _intervals(g: str) -> Optional[List[Tuple[str, str, bool, bool]]]:
    g = re.sub(r"\\left|\\right|\s", "", g).replace("\\tfrac", "\\frac")
    out = []
    for part in g.split("\\cup"):
        m = re.fullmatch(r"([(\[])([^,]+),([^,]+)([)\]])", part)
        if not m:
            return None
        out.append((m.group(2), m.group(3), m.group(1) == "[", m.group(4) == "]"))
    return out


def _as_inequality(ivs) -> str:
    parts = []
    for lo, hi, lc, hc in ivs:
        lo_op, hi_op = ("\\le" if lc else "<"), ("\\le" if hc else "<")
        if lo == "-\\infty" and hi == "\\infty":
            parts.append("x \\in \\mathbb{R}")
        elif lo == "-\\infty":
            parts.append(f"x {hi_op} {hi}")
        elif hi == "\\infty":
            parts.append(f"x {GE if lc else '>'} {lo}")
        else:
            parts.append(f"{lo} {lo_op} x {hi_op} {hi}")
    return " \\text{ or } ".join(parts)


def _interval_pool() -> List[Tuple[str, str]]:
    pool = []
    for r in math_train_rows() + [{"src": x["src"], "gold": x["answer"]} for x in math500_rows()]:
        g = r["gold"]
        ivs = _intervals(g)
        if ivs and ("\\infty" in g or "\\cup" in g or ivs[0][2] != ivs[0][3]):
            pool.append((r["src"], g))
    return pool


def interval(rng: random.Random) -> Iterator[Dict]:
    pool = _interval_pool()
    rng.shuffle(pool)
    for k, (src, g) in enumerate(pool[:36]):
        ivs = _intervals(g)
        form = k % 6
        if form == 0:
            yield _case("interval", src, "x \\in interval", f"The solution set is "
                        f"$\\boxed{{x \\in {g}}}$.", g, True)
        elif form == 1 and len(ivs) > 1:
            swapped = "\\cup".join(re.sub(r"\\left|\\right", "", p)
                                   for p in reversed(g.split("\\cup")))
            yield _case("interval", src, "union in another order",
                        f"So $x \\in {swapped}$.", g, True)
        elif form == 2:
            yield _case("interval", src, "as an inequality",
                        f"Therefore the answer is $\\boxed{{{_as_inequality(ivs)}}}$.", g, True)
        elif form == 3:  # a closed end made open or the reverse
            lo, hi, lc, hc = ivs[-1]
            if hi == "\\infty":
                ivs2 = ivs[:-1] + [(lo, hi, not lc, hc)]
            else:
                ivs2 = ivs[:-1] + [(lo, hi, lc, not hc)]
            bad = "\\cup".join(f"{'[' if a else '('}{x},{y}{']' if b else ')'}"
                               for x, y, a, b in ivs2)
            yield _case("interval", src, "one end open/closed flipped",
                        f"The answer is $\\boxed{{{bad}}}$.", g, False)
        elif form == 4:
            m = re.search(r"\d+", g)
            bad = g[: m.start()] + str(int(m.group()) + 1) + g[m.end():]
            yield _case("interval", src, "an endpoint bumped by one",
                        f"The answer is $\\boxed{{x \\in {bad}}}$.", g, False)
        elif form == 5 and len(ivs) > 1:
            yield _case("interval", src, "a piece of the union missing",
                        "The answer is $\\boxed{" + g.split("\\cup")[0] + "}$.", g, False)
        else:
            yield _case("interval", src, "\\left( \\right) and \\dfrac spelling",
                        "The answer is $\\boxed{" + re.sub(r"([\])])", r"\\right\1", re.sub(
                            r"([\[(])", r"\\left\1", re.sub(r"\\left|\\right", "", g))).replace(
                            "\\frac", "\\dfrac") + "}$.", g, True)


def inequality(rng: random.Random) -> Iterator[Dict]:
    """Gold answers written as inequalities (from real interval answers), model outputs in other
    spellings (`\\lt`, `<=`, flipped, negated, scaled) and wrong ones."""
    pool = [(s, g) for s, g in _interval_pool() if len(_intervals(g)) == 1]
    rng.shuffle(pool)
    n = 0
    for src, g in pool:
        (lo, hi, lc, hc), = _intervals(g)
        if (lo == "-\\infty") == (hi == "\\infty"):
            continue
        bound = hi if lo == "-\\infty" else lo
        if not re.fullmatch(r"-?\d+", bound):
            continue
        b = int(bound)
        if lo == "-\\infty":
            op, lt = ("\\le", "<=") if hc else ("<", "<")
            gold = f"x {op} {b}"
            right = [(f"x \\leq {b}" if hc else f"x \\lt {b}", "\\lt / \\leq spelling"),
                     (f"{b} {GEQ if hc else '>'} x", "flipped"),
                     (f"-x {GE if hc else '>'} {-b}", "negated"),
                     (f"2x {lt} {2 * b}", "scaled, <= spelling"),
                     (f"x \\in {g}", "interval")]
            wrong = [(f"x {'<' if hc else LE} {b}", "strictness changed"),
                     (f"x {GE if hc else '>'} {b}", "direction reversed"),
                     (f"{b} {LE if hc else '<'} x", "flipped the wrong way"),
                     (f"-x {LE if hc else '<'} {-b}", "negated without flipping")]
        else:
            op = "\\ge" if lc else ">"
            gold = f"x {op} {b}"
            right = [(f"x {GEQ if lc else GT} {b}", "\\geq / \\gt spelling"),
                     (f"{b} {LEQ if lc else '<'} x", "flipped"),
                     (f"-x {'<=' if lc else '<'} {-b}", "negated"),
                     (f"3x {'>=' if lc else '>'} {3 * b}", "scaled, >= spelling"),
                     (f"x \\in {g}", "interval")]
            wrong = [(f"x {'>' if lc else GE} {b}", "strictness changed"),
                     (f"x {LE if lc else '<'} {b}", "direction reversed"),
                     (f"x {op} {b + 1}", "bound bumped"),
                     (f"-x {GE if lc else '>'} {-b}", "negated without flipping")]
        for pred, how in right[n % 2::2] if n < 8 else right[:1]:
            yield _case("inequality", src, how, f"Thus $\\boxed{{{pred}}}$.", gold, True)
        yield _case("inequality", src, wrong[n % 4][1], f"Thus $\\boxed{{{wrong[n % 4][0]}}}$.",
                    gold, False)
        n += 1
        if n >= 12:
            break
    extra = [("x \\neq 3", "x != 3", True, "!= spelling"),
             ("x \\neq 3", "(-\\infty,3)\\cup(3,\\infty)", True, "\\neq as a union"),
             ("x \\neq 3", "x = 3", False, "= instead of \\neq"),
             ("x \\ne -2", "x \\neq 2", False, "sign of the excluded point"),
             ("y > 2x + 1", "2x - y < -1", True, "two variables, rearranged"),
             ("y > 2x + 1", "y \\geq 2x + 1", False, "two variables, strictness"),
             ("y \\le -x + 4", "x + y \\le 4", True, "two variables, rearranged"),
             ("y \\le -x + 4", "x + y \\ge 4", False, "two variables, direction"),
             ("x < 1", "-x > -1", True, "issue example: negated"),
             ("x \\leq 5", "5 \\geq x", True, "issue example: flipped"),
             ("1 < x \\le 3", "3 \\geq x > 1", True, "chain read backwards"),
             ("1 < x \\le 3", "1 \\le x < 3", False, "chain with the ends swapped"),
             ("-2 \\le x \\le 2", "x^2 \\le 4", True, "quadratic inequality"),
             ("-2 \\le x \\le 2", "x^2 < 4", False, "quadratic inequality, strict")]
    for k, (gold, pred, exp, how) in enumerate(extra):
        text = (f"Therefore ${pred}$ is the solution." if k % 2 else
                f"The answer is $\\boxed{{{pred}}}$.")
        yield _case("inequality", "constructed", how, text, gold, exp)


def equation(rng: random.Random) -> Iterator[Dict]:
    """Real equation answers (lines, planes, conics) rewritten with sympy: moved to one side,
    scaled, solved for y, sides swapped; wrong: constant changed, a coefficient's sign flipped,
    variables swapped. Each verdict is asserted with sympy on the objects themselves."""
    import sympy
    from sympy import Eq, Rational, expand, latex, solve, symbols

    x, y, z = symbols("x y z")
    golds = [  # (source, gold LaTeX, the same equation built in sympy)
        ("math_train", "4x-5y=-50", Eq(4 * x - 5 * y, -50)),
        ("math_train", "x^2 + y^2 = 13", Eq(x**2 + y**2, 13)),
        ("math_train", "\\frac{x^2}{16} - \\frac{y^2}{9} = 1", Eq(x**2 / 16 - y**2 / 9, 1)),
        ("math_train", "y = -\\frac{1}{2} x^2 + 4x - 6", Eq(y, -x**2 / 2 + 4 * x - 6)),
        ("math_train", "y = \\frac{1}{2} x + 2", Eq(y, x / 2 + 2)),
        ("math_train", "y = x+3", Eq(y, x + 3)),
        ("math_train", "y = 3x^2 - 34x + 88", Eq(y, 3 * x**2 - 34 * x + 88)),
        ("math_train", "x - 3z = 0", Eq(x - 3 * z, 0)),
        ("math_train", "20x + 23y + 26z - 69 = 0", Eq(20 * x + 23 * y + 26 * z - 69, 0)),
        ("math_train", "11x + 6y + 5z + 86 = 0", Eq(11 * x + 6 * y + 5 * z + 86, 0)),
        ("math_train", "10x - 4y - 5z - 20 = 0", Eq(10 * x - 4 * y - 5 * z - 20, 0)),
        ("issue-13", "y=-\\frac{1}{2}x+\\frac{3}{4}", Eq(y, -x / 2 + Rational(3, 4))),
    ]

    def tex(e):
        return latex(e, order="lex").replace("\\left", "").replace("\\right", "")

    def same(e1, e2):
        f1, f2 = e1.lhs - e1.rhs, e2.lhs - e2.rhs
        r = sympy.simplify(f1 / f2)
        return not r.free_symbols and r != 0

    for k, (src, gold, eq) in enumerate(golds):
        f = expand(eq.lhs - eq.rhs)
        rights = [(Eq(expand(-2 * f), 0), "everything on one side, scaled by -2"),
                  (Eq(eq.rhs, eq.lhs), "sides swapped")]
        if f.has(y) and sympy.degree(f, y) == 1:
            rights.append((Eq(y, solve(f, y)[0]), "solved for y"))
        else:
            rights.append((Eq(expand(3 * eq.lhs), expand(3 * eq.rhs)), "both sides times 3"))
        wrongs = [(Eq(f + 1, 0), "constant changed"),
                  (Eq(f.subs(x, -x), 0), "sign of x flipped"),
                  (Eq(f.subs({x: y, y: x}, simultaneous=True), 0), "x and y swapped")]
        for e, how in rights[: 2 if k % 2 else 3]:
            assert same(e, eq), (gold, e)
            yield _case("equation", src, how, f"The equation is $\\boxed{{{tex(e.lhs)} = "
                        f"{tex(e.rhs)}}}$.", gold, True)
        e, how = wrongs[k % 3]
        if same(e, eq):  # symmetric in x (or in x, y): take the constant change instead
            e, how = wrongs[0]
        assert not same(e, eq), (gold, e)
        yield _case("equation", src, how, f"The equation is $\\boxed{{{tex(e.lhs)} = "
                    f"{tex(e.rhs)}}}$.", gold, False)


def matrix(rng: random.Random) -> Iterator[Dict]:
    pool = []
    for r in math_train_rows() + [{"src": x["src"], "gold": x["answer"]} for x in math500_rows()]:
        g = r["gold"]
        if g.startswith("\\begin{pmatrix}") and g.endswith("\\end{pmatrix}") and "&" in g + "\\\\":
            pool.append((r["src"], g))
    rng.shuffle(pool)
    for k, (src, g) in enumerate(pool[:26]):
        body = g[len("\\begin{pmatrix}"): -len("\\end{pmatrix}")]
        rows = [[c.strip() for c in row.split("&")] for row in body.split("\\\\")]
        ncol = len(rows[0])
        form = k % 5
        if form == 0:
            pred = f"\\begin{{bmatrix}}{body}\\end{{bmatrix}}"
            how, exp = "bmatrix", True
        elif form == 1:
            pred = f"\\left[\\begin{{array}}{{{'c' * ncol}}}{body}\\end{{array}}\\right]"
            how, exp = "\\left[\\begin{array}", True
        elif form == 2:
            cells = [[re.sub(r"^(-?)(\d+)/(\d+)$", r"\1\\frac{\2}{\3}", c) for c in row]
                     for row in rows]
            pred = "\\begin{pmatrix} " + " \\\\ ".join(" & ".join(r) for r in cells) + \
                " \\end{pmatrix}"
            how, exp = "fractions spelt \\frac, spacing", True
        elif form == 3:
            m = re.search(r"\d+", body)
            bad = body[: m.start()] + str(int(m.group()) + 1) + body[m.end():]
            pred = f"\\begin{{pmatrix}}{bad}\\end{{pmatrix}}"
            how, exp = "one entry bumped", False
        else:
            if len(rows) == ncol and ncol > 1 and any(
                    rows[i][j] != rows[j][i] for i in range(ncol) for j in range(ncol)):
                t = [[rows[j][i] for j in range(ncol)] for i in range(ncol)]
                pred = "\\begin{bmatrix}" + "\\\\".join("&".join(r) for r in t) + "\\end{bmatrix}"
                how, exp = "transposed (not symmetric)", False
            else:
                bad = "\\\\".join(reversed(body.split("\\\\")))
                if bad.replace(" ", "") == body.replace(" ", ""):
                    continue
                pred = f"\\begin{{pmatrix}}{bad}\\end{{pmatrix}}"
                how, exp = "rows in reverse order", False
        yield _case("matrix", src, how, f"Therefore the matrix is $\\boxed{{{pred}}}$.", g, exp)


def multi_boxed(rng: random.Random) -> Iterator[Dict]:
    pool = []
    for r in math_train_rows():
        g = r["gold"]
        if re.fullmatch(r"-?\d+(\s*,\s*-?\d+)+", g) and "," in g and not re.fullmatch(
                r"\d{1,3},\d{3}", g.replace(" ", "")):
            pool.append((r["src"], g))
    rng.shuffle(pool)
    for k, (src, g) in enumerate(pool[:18]):
        vals = [v.strip() for v in g.split(",")]
        shuffled = vals[:]
        rng.shuffle(shuffled)
        if k % 3 == 0:
            out = "The solutions are " + ", ".join(f"$x = \\boxed{{{v}}}$" for v in shuffled[:-1]) \
                + f" and $x = \\boxed{{{shuffled[-1]}}}$."
            yield _case("multi_boxed", src, "one box per solution, any order", out, g, True)
        elif k % 3 == 1:
            out = "So $" + ", ".join(f"\\boxed{{{v}}}" for v in vals) + "$."
            yield _case("multi_boxed", src, "boxes in a row", out, g, True)
        else:
            out = "The solutions are " + " and ".join(f"$\\boxed{{{v}}}$" for v in vals[:-1]) + "."
            yield _case("multi_boxed", src, "a solution missing", out, g, False)
            out = "The solutions are " + ", ".join(f"$\\boxed{{{v}}}$" for v in vals[:-1]) + \
                f" and $\\boxed{{{int(vals[-1]) + 1}}}$."
            yield _case("multi_boxed", src, "one solution wrong", out, g, False)
    for r in math_train_rows()[:400]:
        g = r["gold"]
        if not re.fullmatch(r"\d+", g):
            continue
        v = int(g)
        yield _case("multi_boxed", r["src"], "a scratch box earlier, the final box right",
                    f"First, $a = \\boxed{{{v + 3}}}$.\n\nThen the answer is $\\boxed{{{v}}}$.",
                    g, True)
        yield _case("multi_boxed", r["src"], "the gold only in an earlier box",
                    f"First, $a = \\boxed{{{v}}}$.\n\nThen the answer is $\\boxed{{{v + 3}}}$.",
                    g, False)
        if v > 30:
            break
    yield _case("multi_boxed", "constructed", "a pair in two boxes",
                "We find $x=\\boxed{2}$ and $y=\\boxed{-3}$.", "(2,-3)", True)
    yield _case("multi_boxed", "constructed", "a pair in two boxes, swapped values",
                "We find $x=\\boxed{-3}$ and $y=\\boxed{2}$.", "(2,-3)", False)


def set_tuple(rng: random.Random) -> Iterator[Dict]:
    pool = []
    for r in math_train_rows():
        g = r["gold"]
        if re.fullmatch(r"-?\d+(\s*,\s*-?\d+)+", g) and not re.fullmatch(r"\d{1,3},\d{3}",
                                                                         g.replace(" ", "")):
            vals = [v.strip() for v in g.split(",")]
            if len(set(vals)) == len(vals):
                pool.append((r["src"], g, vals))
    rng.shuffle(pool)
    for k, (src, g, vals) in enumerate(pool[:16]):
        sh = vals[::-1]
        form = k % 4
        if form == 0:
            yield _case("set_tuple", src, "set braces, another order",
                        f"The set of solutions is $\\boxed{{\\{{{', '.join(sh)}\\}}}}$.", g, True)
        elif form == 1:
            yield _case("set_tuple", src, "gold as a set, output a list",
                        f"The solutions are $\\boxed{{{', '.join(sh)}}}$.",
                        f"\\{{{', '.join(vals)}\\}}", True)
        elif form == 2:
            yield _case("set_tuple", src, "set with an extra element",
                        f"The solutions are $\\boxed{{\\{{{', '.join(vals + ['0' if '0' not in vals else '99'])}\\}}}}$.",
                        g, False)
        else:
            yield _case("set_tuple", src, "'or' between the solutions",
                        "The solutions are $" + " \\text{ or } ".join(f"x = {v}" for v in sh)
                        + "$.", g, True)
            yield _case("set_tuple", src, "a solution missing",
                        f"The solutions are $\\boxed{{\\{{{', '.join(sh[:-1])}\\}}}}$.", g, False)
    pairs = [r for r in math_train_rows() if re.fullmatch(r"\(-?\d+,\s*-?\d+\)", r["gold"])]
    rng.shuffle(pairs)
    for k, r in enumerate(pairs[:10]):
        a, b = re.findall(r"-?\d+", r["gold"])
        if a == b:
            continue
        if k % 2 == 0:
            yield _case("set_tuple", r["src"], "ordered pair reversed",
                        f"The point is $\\boxed{{({b}, {a})}}$.", r["gold"], False)
        else:
            yield _case("set_tuple", r["src"], "ordered pair, \\left( \\right)",
                        f"The point is $\\boxed{{\\left( {a}, {b} \\right)}}$.", r["gold"], True)
    yield _case("set_tuple", "math_train gold \\{1\\pm\\sqrt{5},-2\\}", "roots as a list",
                "The roots are $\\boxed{-2, 1+\\sqrt{5}, 1-\\sqrt{5}}$.",
                "\\{1\\pm\\sqrt{5},-2\\}", True)
    yield _case("set_tuple", "math_train gold \\{1\\pm\\sqrt{5},-2\\}", "one root wrong",
                "The roots are $\\boxed{-2, 1+\\sqrt{5}, \\sqrt{5}-1}$.",
                "\\{1\\pm\\sqrt{5},-2\\}", False)
    yield _case("set_tuple", "constructed", "tuple against a set", "So $\\boxed{(3, 1, 2)}$.",
                "\\{1, 2, 3\\}", True)


def other(rng: random.Random) -> Iterator[Dict]:
    """Other notations real outputs use: radicals rationalised or not, \\pi, degrees, percent,
    decimals vs fractions, scientific notation (Minerva), base subscripts."""
    cases = [
        ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}", True, "rationalised radical"),
        ("\\frac{6\\sqrt{5}}{5}", "\\frac{6}{\\sqrt{5}}", True, "rationalised radical"),
        ("\\frac{\\sqrt7}{14}", "\\frac{1}{2\\sqrt{7}}", True, "rationalised radical"),
        ("2\\sqrt{22}", "\\sqrt{88}", True, "radical simplified"),
        ("2\\sqrt{22}", "\\sqrt{44}", False, "radical, wrong value"),
        ("10\\sqrt 2", "\\sqrt{200}", True, "radical simplified"),
        ("3\\sqrt{2}", "2\\sqrt{3}", False, "radical, digits swapped"),
        ("\\frac{5\\sqrt{3}}{3}", "\\frac{5}{3}\\sqrt{3}", True, "radical coefficient"),
        ("8\\pi", "8 \\cdot \\pi", True, "\\pi product"),
        ("\\frac{\\pi}{4}", "0.25\\pi", True, "\\pi with a decimal"),
        ("\\frac{\\pi}{4}", "\\frac{\\pi}{3}", False, "\\pi, wrong fraction"),
        ("45^\\circ", "45", True, "degrees dropped"),
        ("135^\\circ", "45^\\circ", False, "supplementary angle"),
        ("44\\%", "44", True, "percent sign dropped"),
        ("7.2\\%", "7.2", True, "percent sign dropped"),
        ("7.2\\%", "72", False, "percent, decimal point lost"),
        ("\\frac{1}{4}", "0.25", True, "exact decimal"),
        ("\\frac{1}{3}", "0.333", False, "rounded decimal"),
        ("\\frac{3}{8}", "0.375", True, "exact decimal"),
        ("4.5e33", "4.5 \\times 10^{33}", True, "Minerva scientific notation"),
        ("4.5e33", "4.5 \\times 10^{32}", False, "Minerva, wrong exponent"),
        ("3e6", "3,\\!000,\\!000", True, "Minerva, written out"),
        ("1e-5", "10^{-5}", True, "Minerva, power of ten"),
        ("2.7778e-6", "2.7778 \\times 10^{-6}", True, "Minerva scientific notation"),
        ("52_8", "52_9", False, "base subscript"),
        ("4210_{5}", "4210_5", True, "base subscript braces"),
        ("x^2+7x+10", "(x+2)(x+5)", True, "factored polynomial"),
        ("x^2+7x+10", "(x+2)(x-5)", False, "factored, wrong sign"),
        ("\\text{even}", "\\text{Even}", True, "text answer, case"),
        ("\\text{odd}", "\\text{even}", False, "text answer"),
        ("-\\sqrt{x-3}+3", "3-\\sqrt{x-3}", True, "terms reordered"),
        ("\\infty", "\\infty", True, "infinity"),
        ("(-\\infty, \\infty)", "\\mathbb{R}", True, "all reals"),
        ("\\text{(C)}", "\\text{(C) }12", True, "letter followed by the option's value"),
        ("\\text{(C)}", "\\textbf{(D) }14", False, "another letter with its value"),
        ("\\sqrt[3]{2}", "2^{1/3}", True, "cube root as a power"),
        ("\\sqrt[3]{2}", "2^{1/2}", False, "cube root vs square root"),
        ("\\frac{x+1}{2}", "\\frac{1}{2}(x+1)", True, "fraction of a sum"),
        ("\\frac{\\pi}{4}", "\\pi/4", True, "slash fraction with \\pi"),
        ("\\left( \\frac{1}{2}, \\frac{3}{2} \\right)", "\\frac{1}{2} < x < \\frac{3}{2}", True,
         "interval as a chain"),
        ("[5,\\infty)", "t \\geq 5", True, "inequality in another letter"),
        ("5", "\\boxed{5}", True, "box inside the box"),
        ("\\frac{5}{2}", "2\\frac{1}{2}", True, "mixed number"),
        ("-1./3", "-\\frac{1}{3}", True, "Minerva float literal"),
        ("2", "x = 2 \\text{ or } x = -2", False, "an extra root"),
        ("\\text{Sunday}", "Sunday", True, "word without \\text"),
        ("(2,3)", "x = 2 \\text{ and } y = 3", True, "pair as two assignments"),
        ("(2,3)", "x = 3 \\text{ and } y = 2", False, "pair as two assignments, swapped"),
        ("y = 2x + 3", "2x + 3", True, "right side of y = ... only"),
        ("4x-5y=-50", "-50", False, "only the constant of an equation"),
        ("120", "\\binom{10}{3}", True, "binomial coefficient left unevaluated"),
        ("120", "\\dbinom{10}{7}", True, "binomial coefficient left unevaluated"),
        ("120", "\\binom{10}{4}", False, "binomial coefficient, wrong value"),
        ("3", "\\log_2 8", True, "logarithm left unevaluated"),
        ("2", "\\log_{3} 81", False, "logarithm, wrong value"),
        ("\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}", "(1,-2)", True, "vector as a tuple"),
        ("\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}", "(-2,1)", False, "vector as a tuple, reversed"),
    ]
    for gold, pred, exp, how in cases:
        yield _case("other", "math_train/minerva gold", how,
                    f"Therefore, the final answer is $\\boxed{{{pred}}}$.", gold, exp)


# ----------------------------------------------------------------------------- extraction kinds
def _gsm8k_train() -> List[Dict]:
    path = shared_data_dir() / "gsm8k" / "train.jsonl"
    return [{"src": f"gsm8k_train:{i}", **json.loads(x)} for i, x in enumerate(path.open())]


_FORMULA_GOLD = re.compile(r"-?\d*\\(?:frac|dfrac|sqrt)\{[^{}=,]+\}(?:\{[^{}=,]+\})?"
                           r"|-?\d+\^\{?\d+\}?|-?\d*\\sqrt\{\d+\}")


def bare_formula(rng: random.Random) -> Iterator[Dict]:
    """A whole output that is one formula (a MATH gold `\\frac{10}{9}`, `3\\sqrt{5}` alone, as
    small models often answer): the formula, not its last number. Wrong: the formula bumped."""
    pool = sorted({(r["src"], r["gold"].strip()) for r in math_train_rows()
                   if _FORMULA_GOLD.fullmatch(r["gold"].strip())})
    rng.shuffle(pool)
    for k, (src, g) in enumerate(pool[:27]):
        if k % 3 == 2:
            wrong = _bump(g)
            if wrong and wrong != g:
                yield _case("bare_formula", src, "the formula alone, a number bumped", wrong, g,
                            False)
                continue
        yield _case("bare_formula", src, "the formula alone", g if k % 2 else g + "\n", g, True)


_NAME_SPAN = re.compile(r"\$(\\?[A-Za-z]{1,8}|\\triangle [A-Z]{3}|\\angle [A-Z]{3})\$")


def stated_value(rng: random.Random) -> Iterator[Dict]:
    """Real MATH solutions (boxes removed) ending "Final Answer: The value of $NAME$ is G." with
    a formula name taken from the solution itself: the stated number, not the name."""
    pool = []
    for r in math_train_rows():
        names = _NAME_SPAN.findall(r["solution"])
        if re.fullmatch(r"\d{1,5}", r["gold"].strip()) and names and len(r["solution"]) < 1500:
            pool.append((r, names[-1]))
    rng.shuffle(pool)
    nouns = ("value", "answer", "number", "measure", "length")
    for k, (r, name) in enumerate(pool[:27]):
        g = r["gold"].strip()
        said = str(int(g) + 1) if k % 3 == 2 else g
        lead = "Final Answer: The" if k % 2 else "Therefore, the"
        out = (unbox(r["solution"]) + f"\n\n{lead} {nouns[k % len(nouns)]} of ${name}$ is "
               f"{said}.")
        yield _case("stated_value", r["src"], f"ends '{lead} .. of ${name}$ is N.'", out, g,
                    said == g)


def final_after_box(rng: random.Random) -> Iterator[Dict]:
    """GSM8K train solutions with an intermediate result boxed and the `#### G` line written as
    "The final answer is $G$.": the final statement, not the box. Wrong: the box's value as
    gold."""
    pool = []
    for r in _gsm8k_train():
        steps, final = r["answer"].rsplit("####", 1)
        calcs = re.findall(r"<<[^>]*=([\d.]+)>>([\d.]+)", steps)
        g = final.strip().replace(",", "")
        if calcs and calcs[0][1] != g and re.fullmatch(r"\d+", g):
            pool.append((r, steps, g, calcs[0][1]))
    rng.shuffle(pool)
    for k, (r, steps, g, inter) in enumerate(pool[:27]):
        steps = re.sub(r"<<[^>]*>>", "", steps)
        steps = steps.replace(inter, f"$\\boxed{{{inter}}}$", 1)
        out = steps.rstrip() + f"\nThe final answer is ${int(g):,}$."
        if k % 3 == 2:
            yield _case("final_after_box", r["src"], "gold = the boxed intermediate", out, inter,
                        False)
        else:
            yield _case("final_after_box", r["src"], "boxed intermediate, final statement",
                        out, g, True)


def spaced_thousands(rng: random.Random) -> Iterator[Dict]:
    """GSM8K golds of 5+ digits written with the separators model outputs use: `14 {, }916`,
    `14{,}916`, `14,\\!916`, `14\\,916`, `14\\;916`. Wrong: the last digit changed."""
    pool = sorted({(r["src"], r["answer"].rsplit("####", 1)[1].strip().replace(",", ""))
                   for r in _gsm8k_train()} , key=lambda x: x[0])
    pool = [(src, g) for src, g in pool if re.fullmatch(r"[1-9]\d{4,6}", g)]
    rng.shuffle(pool)
    seps = (" {, }", "{,}", ",\\!", "\\,", "\\;", "{,} ")
    for k, (src, g) in enumerate(pool[:24]):
        val = int(g) + 1 if k % 3 == 2 else int(g)
        text = f"{val:,}".replace(",", seps[k % len(seps)])
        out = (f"So she earns $\\boxed{{{text}}}$ dollars." if k % 2 else
               f"The answer is {text}.")
        yield _case("spaced_thousands", src, f"separator {seps[k % len(seps)]!r}", out, g,
                    val == int(g))


def approx_chain(rng: random.Random) -> Iterator[Dict]:
    """MATH fraction/radical golds written `x = GOLD \\approx DECIMAL` (the exact value, then its
    rounding): the exact value. Wrong: the rounded decimal as gold (strict grading)."""
    from jz3.eval.mathtree import evaluate, parse_math

    pool = []
    for r in math_train_rows():
        g = r["gold"].strip()
        if re.fullmatch(r"\\frac\{\d+\}\{\d+\}|\d*\\sqrt\{\d+\}|\\frac\{\d*\\sqrt\{\d+\}\}\{\d+\}",
                        g):
            v = evaluate(parse_math(g.replace("\\dfrac", "\\frac")), {}).real
            dec = f"{v:.2f}"
            if float(dec) != v:
                pool.append((r["src"], g, dec))
    rng.shuffle(pool)
    for k, (src, g, dec) in enumerate(pool[:24]):
        out = (f"Therefore $x = {g} \\approx {dec}$." if k % 2 else
               f"The answer is $p = {g} \\approx {dec}$")
        if k % 3 == 2:
            yield _case("approx_chain", src, "gold = the rounded decimal", out, dec, False)
        else:
            yield _case("approx_chain", src, "exact value then its rounding", out, g, True)


GENERATORS = (final_sentence, chained_equality, cfrac, thousands, units, choice_letter,
              interval, inequality, equation, matrix, multi_boxed, set_tuple, other,
              bare_formula, stated_value, final_after_box, spaced_thousands, approx_chain)


def build() -> List[Dict]:
    cases = []
    for gen in GENERATORS:
        rng = random.Random(f"jz3-grading-hard-{gen.__name__}")
        for k, c in enumerate(gen(rng)):
            cases.append({"id": f"{gen.__name__}-{k:03d}", **c})
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(DATA_FILE))
    args = ap.parse_args()
    cases = build()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as f:
        for c in cases:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    by_kind = Counter(c["kind"] for c in cases)
    wrong = Counter(c["kind"] for c in cases if not c["expected"])
    print(json.dumps({"cases": len(cases), "expected_wrong": sum(wrong.values()),
                      "by_kind": {k: [by_kind[k], wrong[k]] for k in KINDS}, "out": str(out)}))


if __name__ == "__main__":
    main()
