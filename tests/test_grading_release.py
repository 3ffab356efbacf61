"""`eval.grading: release`: the release protocol's extraction order and leniencies, which strict
grading (the default) does not have."""

from __future__ import annotations

import pytest

from jz3.config.eval import EvalConfig, GradingMode
from jz3.eval.grading import extract_answer, grade
from jz3.eval.release import release_extract

R = GradingMode.release


def test_strict_is_the_default():
    assert EvalConfig().grading == GradingMode.strict


@pytest.mark.parametrize("output,gold,strict,release", [
    ("#### 50", "0.5", False, True),  # gold x 100
    ("#### 50", "5000", False, True),  # gold / 100
    ("#### 50", "51", False, False),
    ("The answer is 100.005", "100", False, True),  # relative tolerance 1e-4
    ("\\boxed{(1,2]}", "[1,2)", False, True),  # interval brackets dropped
    ("\\boxed{0.3333}", "\\frac13", False, True),
    ("\\boxed{x=5}", "5", True, True),
    ("\\boxed{\\frac{1}{2}}", "0.5", True, True),
    ("\\boxed{7}", "8", False, False),
])
def test_release_leniencies(output, gold, strict, release):
    bench = "gsm8k" if output.startswith("#") or "answer is" in output else "math-oai"
    assert grade(output, gold, bench).correct is strict
    assert grade(output, gold, bench, R).correct is release


def test_release_extraction_order():
    # Minerva's sentence first, then the last "boxed", then "he answer is", then the last number
    assert release_extract("So the final answer is $3$. I hope it is correct. \\boxed{4}") == "3"
    assert release_extract("\\boxed{1} and then \\boxed{\\frac{2}{3}} done") == "\\frac{2}{3}"
    assert release_extract("The answer is 12 apples.") == "12 apples"
    assert release_extract("we get 1,234 and 56 more") == "56"
    # strict reads the final statement after a boxed intermediate; the release reads the box
    out = "First \\boxed{12}. Then 12 * 3 = 36.\nThe final answer is 36"
    assert extract_answer(out, "math-oai") == "36"
    assert extract_answer(out, "math-oai", R) == "12"
