"""The hard grading set (test data: tests/data/grading_hard.jsonl): built by its builder from the
shared data (no hand edits), large and balanced enough, and graded as expected by our grader."""

from __future__ import annotations

from collections import Counter

from jz3.bench.grader import DATA_FILE, load_cases
from jz3.eval.grading import grade
from tests.data.grading_hard import KINDS, build


def test_hard_set_is_what_the_builder_writes(shared_data):
    assert shared_data.exists()
    assert build() == load_cases(DATA_FILE)


def test_hard_set_shape():
    cases = load_cases(DATA_FILE)
    assert len(cases) >= 300
    kinds = Counter(c["kind"] for c in cases)
    assert set(kinds) == set(KINDS) and min(kinds.values()) >= 15
    wrong = sum(not c["expected"] for c in cases) / len(cases)
    assert 0.3 <= wrong <= 0.4
    assert len({c["id"] for c in cases}) == len(cases)
    assert all(c["output"] and c["gold"] and c["how"] and c["source"] for c in cases)


def test_hard_set_agreement():
    cases = load_cases(DATA_FILE)
    misses = [(c["id"], c["how"]) for c in cases
              if grade(c["output"], c["gold"], "math-oai").correct != c["expected"]]
    assert 1 - len(misses) / len(cases) >= 0.95, misses
    for kind in KINDS:  # no kind may be failed wholesale while others carry the average
        of_kind = [c for c in cases if c["kind"] == kind]
        bad = [m for m in misses if m[0].startswith(kind)]
        assert len(bad) / len(of_kind) <= 0.15, (kind, bad)
