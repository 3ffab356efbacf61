"""The benchmark registry: every benchmark loads from the shared data with the gold answer of its
kind, protocol fields match the release scripts, and TabMWP's public format loads when present."""

from __future__ import annotations

import json
import re

import pytest

from jz3.benchmarks import (
    REGISTRY,
    AnswerKind,
    Benchmark,
    ReferenceKind,
    find_file,
    last_boxed,
    load_benchmark,
    parse_benchmark,
)
from jz3.config.enums import EvalSetting

NUMBER = re.compile(r"-?\d+(\.\d+)?(e-?\d+)?")
SIZES = {"gsm8k": 1319, "math-oai": 500, "svamp": 1000, "asdiv": 2215, "mawps": 2065,
         "carp_en": 976, "minerva_math": 272, "aqua": 254, "sat_math": 32, "mmlu_stem": 3018,
         "gsm-hard": 1319}


def test_every_benchmark_is_registered_and_loads_with_gold_of_its_kind(shared_data):
    assert set(REGISTRY) == set(Benchmark)
    data = shared_data / "benchmarks"
    for b, s in REGISTRY.items():
        if s.optional and find_file(data, b) is None:
            continue
        items = load_benchmark(b, data)
        assert len(items) == SIZES[b.value], b
        assert len({it.idx for it in items}) == len(items), f"{b}: idx not unique"
        for it in items:
            assert it.question.strip() and it.gold, (b, it.idx)
            if s.answer == AnswerKind.number:
                assert NUMBER.fullmatch(it.gold), (b, it.idx, it.gold)
            if s.answer == AnswerKind.choice:
                assert it.choices and it.gold in "ABCDE"[:len(it.choices)], (b, it.idx)
            if s.reference == ReferenceKind.text and b != Benchmark.aqua:
                assert it.reference, (b, it.idx)


def test_protocol_fields_match_the_release_scripts():
    cot, tool = EvalSetting.cot, EvalSetting.tool
    tool_sets = {b.value for b, s in REGISTRY.items() if tool in s.settings}
    cot_sets = {b.value for b, s in REGISTRY.items() if cot in s.settings}
    # sh/eval/tool_model.sh DATA_NAME
    assert tool_sets == {"gsm8k", "math-oai", "svamp", "asdiv", "mawps", "tabmwp", "gsm-hard"}
    # sh/eval/cot_model.sh: both DATA_NAME lines
    assert cot_sets == {"gsm8k", "math-oai", "svamp", "asdiv", "mawps", "carp_en", "tabmwp",
                        "minerva_math", "aqua", "sat_math", "mmlu_stem"}
    assert REGISTRY[Benchmark.asdiv].answer == AnswerKind.text  # 131 golds like "Mrs. Hilt"
    five = {b.value for b, s in REGISTRY.items() if s.shots.get(cot) == 5}
    assert five == {"aqua", "sat_math", "mmlu_stem"}
    assert all(s.shots.get(tool, 0) == 0 for s in REGISTRY.values())
    assert all(s.multiple_choice == (s.answer == AnswerKind.choice) for s in REGISTRY.values())
    assert parse_benchmark("math") == Benchmark.math_oai
    with pytest.raises(ValueError, match="unknown benchmark 'svamp2'"):
        parse_benchmark("svamp2")


def test_gsm_hard_and_minerva_golds(shared_data):
    data = shared_data / "benchmarks"
    hard = load_benchmark("gsm-hard", data, limit=3)
    raw = [json.loads(x) for x in (data / "gsm-hard" / "test.jsonl").open()][:3]
    assert [float(it.gold) for it in hard] == [float(r["target"]) for r in raw]
    assert hard[0].question == raw[0]["input"] and "def solution" in hard[0].reference
    mm = load_benchmark("minerva_math", data, limit=5)
    assert all(it.gold == last_boxed(it.reference) for it in mm)
    assert last_boxed(r"so \boxed{\frac{1}{2}} and \boxed{x^{2}+1}.") == "x^{2}+1"


def test_tabmwp_public_format_and_absent_file(tmp_path):
    assert find_file(tmp_path, "tabmwp") is None
    d = tmp_path / "tabmwp"
    d.mkdir()
    (d / "problems_test.json").write_text(json.dumps({
        "1": {"question": "How many?", "table": "a | 1", "table_title": "T", "choices": None,
              "unit": "cents", "answer": "1,250", "solution": "s"},
        "2": {"question": "Is it?", "table": "b | 2", "table_title": None,
              "choices": ["yes", "no"], "unit": None, "answer": "No", "solution": "t"}}))
    items = load_benchmark("tabmwp", tmp_path)
    assert [it.gold for it in items] == ["1250", "no"] and [it.idx for it in items] == [0, 1]
    assert items[0].question == 'Read the following table regarding "T" and answer a ' \
        "question:\na | 1\nHow many?"
    assert items[1].question.endswith("Please select from the following options: "
                                      "['yes', 'no'] (Yes or No)")
    assert items[1].choices == ["yes", "no"]


def test_yes_no_golds_get_the_release_hint(shared_data):
    items = load_benchmark("asdiv", shared_data / "benchmarks")
    yes_no = [it for it in items if it.gold.lower() in ("yes", "no")]
    assert yes_no and all(it.question.endswith(" (Yes or No)") for it in yes_no)
    assert not any("(Yes or No)" in it.question for it in items if it not in yes_no)
