"""The education-stage prompt library: templates, rendering checks, seeded mixture."""

from __future__ import annotations

from collections import Counter

import pytest

from jz3.config.enums import PromptType
from jz3.prompts import (
    COT_TYPES,
    PROMPT_TYPES,
    PromptError,
    assign_prompt_type,
    load_template,
    normalize_mixture,
    render,
    template_variables,
)

STAGES = ["grade_school", "middle_school", "high_school", "college", "amc8", "amc10", "amc12",
          "aime", "tool"]


def test_nine_prompt_types_each_with_a_shipped_template():
    assert [t.value for t in PROMPT_TYPES] == STAGES
    texts = {t: load_template(t) for t in PROMPT_TYPES}
    assert len(set(texts.values())) == 9  # each stage has its own wording
    for t, text in texts.items():
        assert template_variables(t) == {"snippet"}
        assert "\\boxed{" in text and "## Question" in text
        assert ("## Code Solution" in text) == (t == PromptType.tool)
        assert ("## Solution" in text) or t == PromptType.tool
    assert "```python" in texts[PromptType.tool] and "```output" in texts[PromptType.tool]


def test_render_fills_the_snippet_and_never_expands_its_braces():
    snippet = "Let $f(x) = x^{2}$ and {{snippet}} {{other}} stay literal."
    out = render("amc10", snippet)
    assert snippet in out
    assert "{{" not in out.replace(snippet, "")
    assert "AMC 10" in out


@pytest.mark.parametrize("call, msg", [
    (lambda: render("high_school", ""), "empty value"),
    (lambda: render("high_school", "   \n"), "empty value"),
    (lambda: render("high_school", "x", extra="y"), "has no variable"),
    (lambda: render("olympiad", "x"), "unknown prompt type"),
])
def test_render_rejects_unfilled_or_unknown_variables(call, msg):
    with pytest.raises(PromptError, match=msg):
        call()


def test_render_names_a_missing_variable(monkeypatch):
    import jz3.prompts.renderer as r

    monkeypatch.setattr(r, "load_template", lambda pt: "A {{snippet}} and {{level}}.")
    monkeypatch.setattr(r, "template_variables", lambda pt: {"snippet", "level"})
    with pytest.raises(PromptError, match=r"no value for variable\(s\) \['level'\]"):
        r.render("college", "text")
    assert r.render("college", "text", level="hard") == "A text and hard."


def test_mixture_assignment_is_seeded_order_free_and_follows_weights():
    ids = [f"doc-{i}:{i % 3}" for i in range(6000)]
    mix = {"grade_school": 3.0, "aime": 1.0, "tool": 0.0}
    a = [assign_prompt_type(i, mix, seed=7) for i in ids]
    b = [assign_prompt_type(i, mix, seed=7) for i in reversed(ids)][::-1]
    assert a == b  # independent of order
    c = Counter(a)
    assert set(c) == {PromptType.grade_school, PromptType.aime}
    assert 0.72 < c[PromptType.grade_school] / len(ids) < 0.78
    other = [assign_prompt_type(i, mix, seed=8) for i in ids]
    assert other != a
    default = Counter(assign_prompt_type(i, None, 0) for i in ids)
    assert set(default) == set(PROMPT_TYPES)
    assert min(default.values()) > len(ids) / 9 * 0.8


def test_normalize_mixture_validates():
    m = normalize_mixture({"college": 1, "amc8": 3})
    assert m == {PromptType.college: 0.25, PromptType.amc8: 0.75}
    assert list(normalize_mixture(None)) == list(PROMPT_TYPES)
    for bad in ({"college": -1}, {"college": 0}, {"phd": 1}, {"college": "lots"}):
        with pytest.raises(PromptError):
            normalize_mixture(bad)
    assert set(COT_TYPES) == set(PROMPT_TYPES) - {PromptType.tool}


def test_cot_prompts_ask_for_detailed_solutions_of_the_release_length():
    for t in COT_TYPES:
        text = load_template(t)
        if t == PromptType.grade_school:  # the release's grade-school prompt sets no length
            assert "250" not in text and "step-by-step" in text and "simple words" in text
        else:
            assert "detailed, step-by-step solution of about 250 to 350 words" in text, t
            assert "explain the reasoning behind every step" in text, t
    assert "100 to 150 words" in load_template("college")  # problem length, as the release
    assert "50 to 100 words" in load_template("amc10")


def test_tool_prompt_worked_example_runs_and_prints_what_it_shows():
    import re
    import subprocess
    import sys

    text = load_template("tool")
    example = text[text.index("Worked example"):text.index("Answer in exactly this format")]
    code = re.search(r"```python\n(.*?)```", example, re.S).group(1)
    shown = re.search(r"```output\n(.*?)```", example, re.S).group(1).strip()
    boxed = re.search(r"\\boxed\{([^}]*)\}", example).group(1)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == shown == boxed
    assert "## Question" in example and "## Code Solution" in example


def test_templates_keep_the_release_constraints():
    """The release's per-level constraints (prompts/cot/*.md), in jz3's own words."""
    t = {k: load_template(k) for k in ("aime", "amc8", "amc10", "amc12", "high_school",
                                        "middle_school", "grade_school", "college")}
    assert "999" not in t["aime"] and "pre-calculus" in t["aime"]
    for k in ("amc8", "amc10"):
        assert "calculator" not in t[k]
    for topic in ("algebra", "number theory", "probability", "geometry", "logic"):
        assert topic in t["amc8"]
    assert "prove" in t["amc10"] and "compute" in t["amc10"] and "no physics" in t["amc10"]
    assert "at least two" in t["high_school"]
    for subject in ("Pre-Calculus", "Calculus", "Statistics", "Trigonometry", "11th grade"):
        assert subject in t["high_school"]
    assert "simple shapes" in t["grade_school"] and "money" not in t["grade_school"]
    for k in ("amc8", "amc10", "high_school", "middle_school", "grade_school"):
        assert "no figure, picture or diagram" in t[k], k
