"""The offline teacher's completion-length cap (`teacher.offline_max_chars`) and its
`{problem, solution}` (MATH train) loader, on small pools written here."""

from __future__ import annotations

import json

import pytest

from jz3.teacher.offline import ADVANCED, ELEMENTARY, OfflineTeacher, load_pool


def _pool(tmp_path, rows):
    p = tmp_path / "pool.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(p)


ROWS = [
    {"question": "Tom has 3 apples and buys 2. How many now?", "answer": "3+2=5\n#### 5"},
    {"question": "A long one. " + "Each box holds 4 pens. " * 60 + "How many pens?",
     "answer": "We count them. " * 40 + "\n#### 240"},
    {"problem": "Compute $\\frac{6}{3}$.", "solution": "$\\frac{6}{3}=\\boxed{2}$."},
    {"problem": "What is $2^3$?", "solution": "It is 8."},  # no \boxed: left out
]


def test_cap_leaves_out_long_completions_and_counts_them(tmp_path):
    path = _pool(tmp_path, ROWS)
    items, skipped = load_pool([path])
    assert len(items) == 3 and sum(skipped.values()) == 1  # the unboxed MATH item
    longest = max(len(it.completion()) for it in items)
    assert longest > 1000
    capped, why = load_pool([path], max_chars=400)
    assert all(len(it.completion()) <= 400 for it in capped)
    assert len(capped) == 2 and why["too_long"] == 1
    assert {it.tier for it in capped} == {ELEMENTARY, ADVANCED}
    math = next(it for it in capped if it.tier == ADVANCED)
    assert math.problem == "Compute $\\frac{6}{3}$." and "\\boxed{2}" in math.solution
    t = OfflineTeacher([path], max_chars=400)
    assert t.describe()["skipped"]["too_long"] == 1 and t.describe()["max_chars"] == 400


def test_cap_that_leaves_nothing_or_is_not_positive_is_an_error(tmp_path):
    path = _pool(tmp_path, ROWS)
    with pytest.raises(ValueError, match="offline_max_chars=10"):
        OfflineTeacher([path], max_chars=10)
    with pytest.raises(ValueError, match="must be > 0"):
        load_pool([path], max_chars=0)


def test_cap_reaches_the_backend_from_the_config(tmp_path):
    from jz3.config.teacher import TeacherConfig
    from jz3.teacher.kd import make_backend

    path = _pool(tmp_path, ROWS)
    b = make_backend(TeacherConfig(offline_pools=[path], offline_max_chars=400))
    assert len(b.items) == 2 and b.max_chars == 400
