"""Parsing teacher / synthesizer completions into problem, solution, answer (+ code)."""

from __future__ import annotations

import json

import pytest

from jz3.synth.parse import (
    ParseError,
    ParseFailure,
    extract_boxed,
    format_completion,
    parse_completion,
)

COT = """## Question
A box holds 3 red and 5 blue marbles. How many marbles are there?

## Solution
There are $3 + 5 = 8$ marbles, so the answer is $\\boxed{\\frac{16}{2}}$.
"""

TOOL = """## Question
What is the sum of the first 10 squares?

## Code Solution
```python
print(sum(k**2 for k in range(1, 11)))
```
```output
385
```
The sum is $\\boxed{385}$.
"""


def test_chain_of_thought_completion():
    p = parse_completion(COT, "grade_school")
    assert p.problem.startswith("A box holds") and p.problem.endswith("are there?")
    assert p.solution.startswith("There are")
    assert p.answer == "\\frac{16}{2}"
    assert p.code is None and p.code_output is None


def test_tool_completion():
    p = parse_completion(TOOL, "tool")
    assert p.code == "print(sum(k**2 for k in range(1, 11)))"
    assert p.code_output == "385"
    assert p.answer == "385"
    # No output block: still parses (the filter stage can run the code), answer from boxed.
    q = parse_completion(TOOL.replace("```output\n385\n```\n", ""), "tool")
    assert q.code_output is None and q.answer == "385"


def test_format_completion_round_trips():
    text = format_completion("What is 2+2?", "2+2=4, so \\boxed{4}.")
    assert parse_completion(text, "aime").answer == "4"
    code = format_completion("Q?", "```python\nprint(1)\n```\n```output\n1\n```\n\\boxed{1}",
                             tool=True)
    assert parse_completion(code, "tool").code == "print(1)"


@pytest.mark.parametrize("text, ptype, reason", [
    ("", "college", ParseFailure.empty),
    ("Just a problem.\n## Solution\n\\boxed{1}", "college", ParseFailure.missing_question),
    ("## Question\nWhat is 1+1?", "college", ParseFailure.missing_solution),
    ("## Question\n\n## Solution\n\\boxed{2}", "college", ParseFailure.empty_question),
    ("## Question\nWhat?\n## Solution\n   ", "college", ParseFailure.empty_solution),
    ("## Question\nWhat?\n## Solution\nIt is two.", "college", ParseFailure.missing_answer),
    ("## Question\nWhat?\n## Solution\n\\boxed{ }", "college", ParseFailure.empty_answer),
    (COT + "\n## Question\nAnother?\n## Solution\n\\boxed{1}", "amc8", ParseFailure.duplicate_header),
    (TOOL, "high_school", ParseFailure.wrong_solution_kind),
    (COT.replace("## Solution", "## Code Solution"), "tool", ParseFailure.missing_code),
    ("## Question\nQ?\n## Code Solution\n```python\nprint(1)\n", "tool", ParseFailure.unclosed_code),
    ("## Solution\n\\boxed{1}\n## Question\nQ?", "college", ParseFailure.missing_question),
])
def test_rejections_carry_a_reason(text, ptype, reason):
    with pytest.raises(ParseError) as err:
        parse_completion(text, ptype)
    assert err.value.reason == reason
    assert str(err.value).startswith(reason.value)


def test_answer_without_boxed_is_optional_on_request():
    text = "## Question\nWhat?\n\n## Step-by-Step Solution\nTwo things.\nThe answer is: $905$."
    assert parse_completion(text, "college").answer == "905"  # closing answer sentence
    bare = "## Question\nWhat?\n## Solution\nIt is two."
    assert parse_completion(bare, "college", require_answer=False).answer is None


def test_extract_boxed_nested_and_last():
    assert extract_boxed("\\boxed{1} then \\boxed{\\frac{a}{b^{2}}}") == "\\frac{a}{b^{2}}"
    assert extract_boxed("\\boxed{unbalanced") is None
    assert extract_boxed("no box") is None


def test_parses_the_real_jiuzhang3_tool_samples(shared_data):
    ok = total = 0
    with open(shared_data / "jiuzhang3_samples" / "tool_pretrain_sampled.jsonl") as fh:
        for line in fh:
            r = json.loads(line)
            total += 1
            try:
                p = parse_completion(r["input"] + r["output"], "tool")
            except ParseError:
                continue
            ok += 1
            assert p.code and p.problem
    assert total == 1000 and ok >= 950
