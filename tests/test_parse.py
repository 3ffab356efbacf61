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


# A KD file in the JiuZhang3.0 release's own format (generate_oai.py rows; prompts end with
# "## New Problem" and ask for [Problem]/[Solution] sections; the tool rows are
# {"prompt", "response"} with [Problem Description] ... [/Problem Description]).
REL_COT_PROMPT = ("## Instruction\nWrite a middle-school problem from the excerpt.\n\n"
                  "## Math Content\n```\nA rectangle's area is its length times its width.\n```\n\n"
                  "## Guidelines\n[Problem]: a self-contained problem.\n[Solution]: steps.\n\n"
                  "## New Problem")
REL_TOOL_PROMPT = ("Use the math content to write a problem solved with Python code, in two "
                   "sections: [Problem Description] and [Solution].\n\nMath content for "
                   "inspiration:\n```\nThe sum of the first n odd numbers is n squared.\n```\n\n"
                   "Guidelines: put the answer in /boxed{}.")
RELEASE_ROWS = [
    {"prompt_mix": REL_COT_PROMPT, "prompt_type": "middle", "source": "textbook",
     "chat_prompt": [{"role": "user", "content": REL_COT_PROMPT}],
     "generated_text": "[Problem]: A garden is 7 m long and 4 m wide. What is its area?\n\n"
                       "[Solution]: Area = length x width = $7 \\times 4 = 28$ square metres."},
    {"prompt": REL_COT_PROMPT, "prompt_type": "grade",
     "generated_text": "**Problem:**\nA tile is 3 cm by 5 cm. What is its area?\n\n**Solution:**\n"
                       "$3 \\times 5 = 15$, so the area is $\\boxed{15}$ square centimetres."},
    {"prompt": REL_TOOL_PROMPT,
     "response": "[Problem Description]\nWhat is the sum of the first 12 odd numbers?\n"
                 "[/Problem Description]\n\n[Solution]\n```python\n"
                 "print(sum(2 * k + 1 for k in range(12)))\n```\n```output\n144\n```\n"
                 "The sum is /boxed{144}.\n[/Solution]"},
    {"prompt": REL_COT_PROMPT, "prompt_type": "aime", "generated_text": "Here is a problem."},
    {"prompt": REL_COT_PROMPT, "prompt_type": "olympiad",
     "generated_text": "[Problem]: x\n[Solution]: y"},
]


def test_reads_a_kd_set_in_the_release_format(tmp_path):
    from jz3.prompts import render
    from jz3.synth.parse import read_release_kd

    f = tmp_path / "release_kd.jsonl"
    lines = [json.dumps(r) for r in RELEASE_ROWS]
    f.write_text("\n".join(lines[:2] + ["", "{oops"] + lines[2:]) + "\n")
    good, bad = read_release_kd(f)
    assert [r["prompt_type"] for r in good] == ["middle_school", "grade_school", "tool"]
    mid, grade, tool = good
    assert mid["problem"] == "A garden is 7 m long and 4 m wide. What is its area?"
    assert mid["answer"] is None  # the release's CoT prompts do not ask for \boxed
    assert mid["snippet"] == "A rectangle's area is its length times its width."
    assert mid["prompt"] == render("middle_school", mid["snippet"])  # jz3's prompt of that type
    assert mid["source_prompt"] == REL_COT_PROMPT
    assert parse_completion(mid["completion"], "middle_school", require_answer=False).problem \
        == mid["problem"]
    assert grade["answer"] == "15"
    assert tool["answer"] == "144" and tool["completion"].startswith("## Question\nWhat is the sum")
    p = parse_completion(tool["completion"], "tool")
    assert p.code == "print(sum(2 * k + 1 for k in range(12)))" and p.code_output == "144"
    assert "[/Solution]" not in tool["completion"]
    # every non-blank line is accounted for, with its real line number
    assert [(b["line"], b["reason"].split(":")[0]) for b in bad] == [
        (4, "malformed JSON"), (6, "parse"), (7, "unknown prompt_type 'olympiad' (release levels")]
    assert len(good) + len(bad) == 6
    kept, _ = read_release_kd(f, reprompt=False)
    assert kept[0]["prompt"] == REL_COT_PROMPT
    arr = tmp_path / "release_kd.json"  # Dataset.to_json(lines=False) writes one array
    arr.write_text(json.dumps(RELEASE_ROWS[:3]))
    assert [r["completion"] for r in read_release_kd(arr)[0]] == [r["completion"] for r in good]


def test_release_kd_converter_cli(tmp_path, capsys):
    from jz3.synth.parse import main

    src = tmp_path / "release.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in RELEASE_ROWS) + "\n")
    assert main(["release-kd", str(src), str(tmp_path / "out" / "kd.jsonl")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["records"] == 3 and summary["rejected"] == 2
    kd = [json.loads(x) for x in (tmp_path / "out" / "kd.jsonl").read_text().splitlines()]
    assert [r["prompt_type"] for r in kd] == ["middle_school", "grade_school", "tool"]
    assert all({"id", "prompt", "completion", "problem", "solution", "answer"} <= set(r) for r in kd)
    rej = (tmp_path / "out" / "kd.rejected.jsonl").read_text().splitlines()
    assert [json.loads(x)["line"] for x in rej] == [4, 5]
