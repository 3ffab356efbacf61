"""Final-answer extraction, one test per kind of output, written as MATH / GSM8K model outputs
are written (each kind also keeps the usual case working). Rules: docs/GRADING.md "Extraction"."""

from __future__ import annotations

import pytest

from jz3.braces import balanced, boxed_spans, last_boxed, match_brace, unbox
from jz3.eval.grading import extract_answer, gold_answer, grade


def _ok(output: str, gold: str, bench: str = "math-oai") -> bool:
    return grade(output, gold, bench).correct


def test_one_brace_matcher():
    assert match_brace("{a{b}c}d", 0) == 6
    assert match_brace("{a\\}b}", 0) == 5  # an escaped brace does not close
    assert match_brace("{never", 0) == -1
    assert balanced("\\frac{1}{2}") and not balanced("}{") and balanced("\\{1\\}")
    text = "We get $\\boxed{\\left\\{1,2\\right.}$ and \\fbox{3} then \\boxed 7 and \\boxedx."
    assert [c for _, _, c in boxed_spans(text)] == ["\\left\\{1,2\\right.", "3", "7"]
    assert last_boxed(text) == "7"
    assert last_boxed("cut \\boxed{1} then \\boxed{2") is None
    assert unbox("so $x=\\boxed{5}$.") == "so $x=5$."


@pytest.mark.parametrize("output,gold,pred", [
    ("\\frac{10}{9}", "\\frac{10}{9}", "\\frac{10}{9}"),
    ("\\dfrac{3}{4}", "0.75", "\\dfrac{3}{4}"),
    ("\\frac13", "\\frac{1}{3}", "\\frac13"),
    ("  \\sqrt{15}\n", "\\sqrt{15}", "\\sqrt{15}"),
    ("2^{10}", "1024", "2^{10}"),
    ("4\\sqrt{3}.", "4\\sqrt3", "4\\sqrt{3}"),
    ("\\frac{\\pi}{6}", "\\frac{\\pi}{6}", "\\frac{\\pi}{6}"),
])
def test_whole_output_is_one_formula(output, gold, pred):
    assert extract_answer(output, "math-oai") == pred
    assert _ok(output, gold)


def test_prose_with_numbers_is_not_a_bare_formula():
    assert extract_answer("3 apples and then 7 pears", "svamp") == "7"
    assert extract_answer("so #### 1,234", "gsm8k") == "1,234"
    assert extract_answer("Total: 2 + 3 = 5", "gsm8k") == "5"


@pytest.mark.parametrize("output,gold", [
    ("Final Answer: The volume of $ABCDEFGH$ is 120.", "120"),
    ("The largest $n$ is 34.", "34"),
    ("Therefore, the perimeter of $\\triangle PQR$ is $48$.", "48"),
    ("So the number of ways to arrange $ABCDE$ is 120 ways.", "120"),
    ("Final Answer: The final answer is $\\frac{3}{5}$. I hope it is correct.", "\\frac35"),
])
def test_the_value_a_sentence_states_about_a_named_formula(output, gold):
    assert _ok(output, gold)


def test_a_formula_with_a_value_is_kept_when_a_number_follows():
    # the first formula already holds a value: it is the answer, not the later number
    assert _ok("The answer is $x=3$ since 2 is too small.", "3")


@pytest.mark.parametrize("output,gold,wrong", [
    ("She packs $\\boxed{12}$ eggs per box. She has 871 boxes, so 12 * 871 = 10455 eggs.\n"
     "The final answer is $10,455$", "10455", "12"),
    ("First $a = \\boxed{3}$.\nThen $b = 2a + 1 = 7$.\nTherefore, the answer is 7.", "7", "3"),
    ("The area is \\boxed{24}.", "24", "25"),  # one box, nothing after it: the box
])
def test_a_final_statement_after_a_boxed_intermediate_wins(output, gold, wrong):
    assert _ok(output, gold)
    assert not _ok(output, wrong)


@pytest.mark.parametrize("output,gold,expected", [
    ("Adding them up, $x = 5+5+1 = 7 = 11$.", "11", True),
    ("Adding them up, $x = 5+5+1 = 7 = 11$.", "7", False),
    ("The answer is $x = 1/3 \\approx 0.33$", "\\frac13", True),
    ("\\boxed{p = \\frac{1}{3} \\approx 0.333}", "0.333", False),
    ("So $\\$24{,}000 \\cdot 1.01^{30} \\approx \\$32,\\!348$.", "32348", True),
    ("Hence \\boxed{7!\\times 2! = 10,\\!080}", "10080", True),
])
def test_chained_relations(output, gold, expected):
    assert _ok(output, gold) is expected


@pytest.mark.parametrize("output", [
    "\\boxed{14 {, }916}", "\\boxed{14{,}916}", "\\boxed{14,\\!916}", "The answer is 14\\,916.",
    "#### 14,916", "So Tom pays $\\$14{,}916$ in total.",
])
def test_thousands_separators(output):
    assert _ok(output, "14916")
    assert not _ok(output, "14917")


def test_a_pair_is_not_a_thousands_group():
    assert not _ok("\\boxed{(1,234)}", "1234")


@pytest.mark.parametrize("output,gold,expected", [
    ("So the matrix is $\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}$.",
     "\\begin{bmatrix} 1 & 2 \\\\ 3 & 4 \\end{bmatrix}", True),
    ("\\boxed{\\left[\\begin{array}{cc} 1 & 2 \\\\ 3 & 4 \\end{array}\\right]}",
     "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", True),
    ("Thus $\\mathbf{M} = \\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}.$",
     "\\begin{pmatrix} 1 & 3 \\\\ 2 & 4 \\end{pmatrix}", False),
    ("$$\\begin{pmatrix} -1/3 \\\\ 2/3 \\end{pmatrix}$$",
     "\\begin{pmatrix} -\\frac{1}{3} \\\\ \\frac{2}{3} \\end{pmatrix}", True),
])
def test_matrices(output, gold, expected):
    assert _ok(output, gold) is expected


@pytest.mark.parametrize("output,gold,expected", [
    ("\\boxed{\\text{C}}", "\\text{(C)}", True),
    ("\\boxed{\\text{(C)}}", "C", True),
    ("The answer is $\\textbf{(C)}$.", "\\text{(C)}", True),
    ("\\boxed{\\text{(B)}}", "\\text{(C)}", False),
])
def test_lettered_answers(output, gold, expected):
    assert _ok(output, gold) is expected


@pytest.mark.parametrize("output,gold,expected", [
    ("\\boxed{1}\\boxed{2}", "1,2", True),
    ("The solutions are $x = \\boxed{-2}$ and $x = \\boxed{5}$.", "5, -2", True),
    ("\\boxed{1, 2}", "\\boxed{1}, \\boxed{2}", True),
    ("\\boxed{1}\\boxed{2}", "1,3", False),
])
def test_several_boxes(output, gold, expected):
    assert _ok(output, gold) is expected


def test_gold_given_as_a_whole_solution():
    sol = ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
           "She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18")
    assert gold_answer(sol, "gsm8k") == "18"
    assert _ok("The answer is 18", sol, "gsm8k")
    assert not _ok("The answer is 9", sol, "gsm8k")
    math_sol = "We compute $2+3 = 5$, so the answer is $\\boxed{5}$."
    assert gold_answer(math_sol, "math-oai") == "5"
    assert _ok("\\boxed{5}", math_sol) and not _ok("\\boxed{6}", math_sol)
    assert gold_answer("\\frac{1}{2}", "math-oai") == "\\frac{1}{2}"  # a plain gold is kept
