"""Grading of the hard answer kinds: each kind in both directions (equivalent forms are
right, changed values/brackets/directions are wrong), extraction without boxes, several boxes,
and pathological inputs that must neither hang nor crash."""

from __future__ import annotations

import time

import pytest

from jz3.eval.extract import extract_math, joined_boxed
from jz3.eval.grading import Verdict, answers_match, grade, is_correct
from jz3.eval.normalize import normalize_answer
from jz3.eval.relations import parse_real_set, relation_chain


def _m(pred: str, gold: str) -> bool:
    return answers_match(pred, gold, "math-oai")


KINDS = {
    "cfrac": [
        ("\\cfrac{24}{5}", "\\frac{24}{5}", True),
        ("\\cfrac{5}{24}", "\\frac{24}{5}", False),
        ("1+\\cfrac{1}{2+\\cfrac{1}{3}}", "\\frac{10}{7}", True),
        ("1+\\cfrac{1}{2+\\cfrac{1}{3}}", "\\frac{11}{7}", False),
    ],
    "thousands": [
        ("11,\\! 111", "11111", True),
        ("32{,}349", "32349", True),
        ("32349", "32{,}349", True),
        ("\\frac{12}{5,\\!525}", "\\frac{12}{5525}", True),
        ("11,\\!112", "11111", False),
        ("(32, 349)", "32349", False),
        ("32", "32{,}349", False),
    ],
    "units": [
        ("12\\textnormal{ cm}", "12", True),
        ("12\\mbox{ inches}", "12", True),
        ("144\\ \\mathrm{m}^3", "144", True),
        ("81", "81\\text{ teachers}", True),
        ("6630 \\mathrm{~m}", "6630", True),
        ("13\\mbox{ gm}", "12 \\text{ gm}", False),
    ],
    "choice_letter": [
        ("\\text{(C)}", "C", True),
        ("(C)", "\\text{(C)}", True),
        ("\\textbf{(C)}", "\\text{(C)}", True),
        ("\\text{(C) }12", "\\text{(C)}", True),
        ("\\text{(D)}", "\\text{(C)}", False),
        ("\\textbf{(D) }14", "\\text{(C)}", False),
    ],
    "interval": [
        ("x \\in (-\\infty,-8)\\cup(8,\\infty)", "(-\\infty,-8)\\cup (8,\\infty)", True),
        ("(8,\\infty)\\cup(-\\infty,-8)", "(-\\infty,-8)\\cup (8,\\infty)", True),
        ("\\left[ \\dfrac{3}{2}, 2 \\right)", "[\\frac32, 2)", True),
        ("(-\\infty,0)\\cup[0,1]", "(-\\infty,1]", True),  # merged pieces (sympy sets)
        ("x \\in \\mathbb{R}", "(-\\infty,\\infty)", True),
        ("(-\\infty,-8]\\cup(8,\\infty)", "(-\\infty,-8)\\cup (8,\\infty)", False),
        ("(-\\infty,-8)", "(-\\infty,-8)\\cup (8,\\infty)", False),
        ("x \\in (-\\infty, 6) \\cup (5,\\infty)", "(-\\infty,5)\\cup(5,\\infty)", False),
        ("[5,\\infty)", "5", False),
        ("\\lambda \\in (3,4]", "(3,4]", True),
    ],
    "inequality": [
        ("x \\geq 5", "[5,\\infty)", True),
        ("5 \\geq x", "x \\leq 5", True),
        ("-x > -1", "x<1", True),
        ("x \\lt 1", "x<1", True),
        ("2x >= 10", "x\\ge 5", True),
        ("x != 3", "x \\neq 3", True),
        ("x \\ne 3", "(-\\infty,3)\\cup(3,\\infty)", True),
        ("x < -8 \\text{ or } x > 8", "(-\\infty,-8)\\cup (8,\\infty)", True),
        ("1 < x \\leq 3", "(1,3]", True),
        ("3 \\geq x > 1", "1 < x \\le 3", True),
        ("x^2 \\le 4", "-2 \\le x \\le 2", True),
        ("t \\geq 5", "[5,\\infty)", True),
        ("y > 2x+1", "2x - y < -1", True),
        ("x > 5", "[5,\\infty)", False),
        ("x \\le 5", "x \\ge 5", False),
        ("-x > -1", "x > 1", False),
        ("x \\le -8 \\text{ or } x > 8", "(-\\infty,-8)\\cup (8,\\infty)", False),
        ("1 \\lt x \\lt 3", "(1,3]", False),
        ("x = 3", "x \\neq 3", False),
        ("y \\ge 2x+1", "2x - y < -1", False),
        ("x^2 < 4", "-2 \\le x \\le 2", False),
    ],
    "equation": [
        ("2x+4y-3=0", "y=-\\frac{1}{2}x+\\frac{3}{4}", True),
        ("-50 = 4x - 5y", "4x-5y=-50", True),
        ("\\frac{x^2}{16} - \\frac{y^2}{9} = 1", "9x^2-16y^2=144", True),
        ("0 = 20x + 23y + 26z - 69", "-40x - 46y - 52z + 138 = 0", True),
        ("2x+4y+3=0", "y=-\\frac{1}{2}x+\\frac{3}{4}", False),
        ("9x^2-16y^2=145", "\\frac{x^2}{16} - \\frac{y^2}{9} = 1", False),
        ("x - y - 3 = 0", "y = x + 3", False),
        ("-50", "4x-5y=-50", False),  # a gold equation is not answered by its constant
        ("2x+3", "y = 2x + 3", True),  # ... but a one-letter left side may be left out
    ],
    "chained_equality": [
        ("x = 5+5+1 = 11", "11", True),
        ("A+B+C=3+3+2=8", "8", True),
        ("2c = 24", "24", True),
        ("(a,b) = (-2,1)", "(-2,1)", True),
        ("7!\\times 2!=10,\\!080", "10080", True),  # `2!=` is a factorial, not `\\ne`
        ("36 - 7 - 2 - 10 = 17 = x", "17", True),
        ("\\$24{,}000 \\cdot 1.01^{30} \\approx \\$32,\\!348", "32348", True),
        ("\\frac{\\sin 20^\\circ - \\sin 40^\\circ}{\\sin 10^\\circ} = -\\sqrt{3}", "-\\sqrt{3}", True),
        ("x = 5+5+1 = 11", "12", False),
        ("x = 11 + 1 = 12", "11", False),
        ("(a,b) = (1,-2)", "(-2,1)", False),
    ],
    "matrix": [
        ("\\left[\\begin{array}{cc}1&2\\\\3&4\\end{array}\\right]",
         "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", True),
        ("\\begin{bmatrix}1/2&0\\\\0&1\\end{bmatrix}",
         "\\begin{pmatrix}\\frac{1}{2}&0\\\\0&1\\end{pmatrix}", True),
        ("(1,-2)", "\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}", True),
        ("\\begin{bmatrix}1&3\\\\2&4\\end{bmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}",
         False),
        ("(-2,1)", "\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}", False),
    ],
    "set_tuple": [
        ("\\{1,2\\}", "2, 1", True),
        ("(2,1)", "\\{1,2\\}", True),
        ("x=1 \\text{ or } x=2", "1,2", True),
        ("-2, 1+\\sqrt{5}, 1-\\sqrt{5}", "\\{1\\pm\\sqrt{5},-2\\}", True),
        ("x = 2, y = 3", "(2,3)", True),
        ("(2,1)", "(1,2)", False),
        ("\\{1,2,3\\}", "1,2", False),
        ("x = 3, y = 2", "(2,3)", False),
        ("[1,2]", "\\{1,2\\}", False),
    ],
    "other": [
        ("\\binom{10}{3}", "120", True),
        ("\\log_2 8", "3", True),
        ("\\log_{3} 81", "2", False),
        ("4210_5", "4210_{5}", True),
        ("52_9", "52_8", False),
        ("\\cot x", "\\cotx", True),
        ("\\pi r^2", "r^2\\pi", True),
        ("0.333", "\\frac{1}{3}", False),
    ],
}


@pytest.mark.parametrize("kind,pred,gold,expected",
                         [(k, *c) for k, cases in KINDS.items() for c in cases])
def test_kind(kind, pred, gold, expected):
    assert _m(pred, gold) is expected, (kind, normalize_answer(pred), normalize_answer(gold))


@pytest.mark.parametrize("output,expected", [
    ("Solving gives $2x \\geq 10$.\nTherefore $x \\geq 5$ is the solution.", "x \\geq 5"),
    ("so $x = 5+5+1 = 11$.", "x = 5+5+1 = 11"),
    ("Thus, \\[\\det (-3 \\mathbf{A}) = (-3)^2 \\cdot 2 = 18.\\]", "\\det (-3 \\mathbf{A}) = (-3)^2 \\cdot 2 = 18"),
    ("\\begin{align*}\na+b&=53+2\\\\\n&=55.\n\\end{align*}", "55"),
    ("So $x=5$ is the value of $x$.", "x=5"),
    ("He earns $5 per hour, so in 3 hours he earns $15.", "15"),  # dollars, not math
    ("First $x = 3$. Then she buys 4 more, 7 in all.", "7"),  # a number after the formula
    ("The answer is $5$.", "5"),
    ("so there are $9$ divisors of 196.", "9"),  # a number later in the same sentence
    ("Thus $\\mathbf{v} = \\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}.$",
     "\\mathbf{v} = \\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"),  # matrix rows are not lines
    ("The area is $6$.\n[asy]\nlabel(\"$A(5,3)$\",A,SW); dot((2,8));\n[/asy]", "6"),  # a figure
])
def test_extraction_without_box(output, expected):
    assert extract_math(output) == expected


def test_final_sentence_graded():
    out = "Solving $2x - 3 \\geq 7$ gives $2x \\geq 10$.\nTherefore $x \\geq 5$ is the solution."
    assert is_correct(out, "[5,\\infty)", "math-oai")
    assert not is_correct(out.replace("x \\geq 5$ is", "x \\geq 10$ is"), "[5,\\infty)",
                          "math-oai")


@pytest.mark.parametrize("output,expected", [
    ("The solutions are $\\boxed{2}$ and $\\boxed{3}$.", "2, 3"),
    ("$x=\\boxed{1}, y=\\boxed{2}$", "1, 2"),
    ("We get $\\boxed{3}$ for a.\n\nThus the answer is $\\boxed{5}$.", "5"),
    ("First $\\boxed{3}$. Then, after much more work than fits in one line, $\\boxed{5}$.", "5"),
    ("\\boxed{\\boxed{5}}", "5"),
    ("cut off \\boxed{1} and \\boxed{2", None),
])
def test_several_boxes(output, expected):
    assert joined_boxed(output) == expected


def test_several_boxes_graded():
    assert is_correct("The solutions are $x=\\boxed{-2}$ and $x=\\boxed{1}$.", "1,-2", "math-oai")
    assert not is_correct("The solutions are $\\boxed{1}$.", "1,-2", "math-oai")
    # the same value twice is one answer (a MATH500 reference solution does this)
    assert is_correct("$\\boxed{15\\frac{39}{40}},$ or $\\boxed{\\frac{639}{40}}$ inches.",
                      "\\frac{639}{40}", "math-oai")


def test_relation_parsing():
    assert relation_chain("1<x\\le 3") == (["1", "x", "3"], ["<", "\\le"])
    assert relation_chain("(1,2)") is None
    pieces, var = parse_real_set("x<-1\\lor x>2")
    assert var == {"x"} and len(pieces) == 2
    assert parse_real_set("(1,2)") is None  # a point or an interval: ambiguous on its own
    assert parse_real_set("(1,2)", allow_plain_interval=True) is not None
    assert parse_real_set("x+y<1") is None  # two variables: compared as a relation instead


def test_verdict_reasons():
    v = grade("no number here", "5", "math-oai")
    assert v == Verdict(False, "", "no answer found")
    assert grade("\\boxed{6}", "5", "math-oai").reason == "not equivalent"
    assert grade("\\boxed{5}", "5", "math-oai") == Verdict(True, "5", "")
    assert "unsupported command \\weird" in grade("\\boxed{\\weird{x}}", "x+1", "math-oai").reason


PATHOLOGICAL = [
    ("\\boxed{10^{10^{10}}}", "5"),
    ("\\boxed{9^{9^{9^9}} = y}", "y = 1"),
    ("\\boxed{x \\ge 10^{10^{10}}}", "[5,\\infty)"),
    ("\\boxed{x^{99999999999}+1}", "x+1"),
    ("\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}", "1"),
    ("\\boxed{" + "(" * 3000 + "1" + ")" * 3000 + "}", "1"),
    ("\\boxed{" + "\\frac{1}{" * 300 + "2" + "}" * 300 + "}", "1"),
    ("a" * 100_000, "5"),
    ("x \\( y " * 20_000, "5"),
    ("$" * 100_000, "5"),
    ("\\begin{" * 30_000, "5"),
    ("\\boxed{1} and " * 5_000, "2"),
    ("\\boxed{" + "1+" * 30_000 + "1}", "30001"),
    ("\\boxed{\\{" + ",".join(["1"] * 2000) + "\\}}", "1"),
    ("\\boxed{\\begin{pmatrix}" + "&".join(["1"] * 3000) + "\\end{pmatrix}}", "1"),
    ("\\boxed{1.5}", "1" * 5000),
    ("\\boxed{" + ", ".join(f"\\sqrt{{{i}}}+x^{{{i}}}" for i in range(2, 42)) + "}",
     ", ".join(f"\\sqrt{{{i + 100}}}+x^{{{i}}}" for i in range(2, 42))),  # 40 x 40 sympy pairs
]


@pytest.mark.parametrize("output,gold", PATHOLOGICAL)
def test_pathological_inputs_neither_hang_nor_crash(output, gold):
    t0 = time.monotonic()
    v = grade(output, gold, "math-oai")
    assert v.correct is False and v.reason
    # one sympy timeout (5 s) at most per comparison, plus the helper's restart
    assert time.monotonic() - t0 < 60
