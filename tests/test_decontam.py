"""Benchmark decontamination by word n-gram overlap against every shared test set."""

from __future__ import annotations

import json

import pytest

from jz3.data.decontam import Decontaminator

JOSH = ("Josh decides to try flipping a house.  He buys a house for $80,000 and then puts in "
        "$50,000 in repairs.  This increased the value of the house by 150%.  How much profit "
        "did he make?")
# light rewording: names and the final question changed, most 10-grams intact
JOSH_REWORDED = ("Maria decides to try flipping a house. She buys a house for $80,000 and then "
                 "puts in $50,000 in repairs. This increased the value of the house by 150%. "
                 "What was her profit?")
# heavy rewording: same story, no 10 consecutive words in common
JOSH_PARAPHRASE = ("A man purchases a home at 80,000 dollars, spends 50,000 dollars fixing it, "
                   "and its worth rises by 150 percent. Find his gain.")
UNRELATED = ("A rectangle has a perimeter of 36 cm and its length is twice its width. "
             "Find the area of the rectangle in square centimetres.")


@pytest.fixture(scope="module")
def decon(shared_data):
    return Decontaminator.from_folders([shared_data / "benchmarks"], n=10)


def test_every_benchmark_is_indexed(decon, shared_data):
    names = {p.parent.name for p in (shared_data / "benchmarks").glob("*/test.jsonl")}
    assert set(decon.sizes) == names
    for name in names:
        with open(shared_data / "benchmarks" / name / "test.jsonl") as fh:
            assert decon.sizes[name] == sum(1 for line in fh if line.strip())


def test_planted_gsm8k_question_and_reworded_copy_are_caught(decon):
    m = decon.check("Here is a problem. " + JOSH + " Show your work.")
    assert m is not None and m.benchmark == "gsm8k" and m.idx == 2
    r = decon.check(JOSH_REWORDED)
    assert r is not None and r.benchmark == "gsm8k" and r.idx == 2
    assert decon.check(UNRELATED) is None
    assert decon.check(JOSH_PARAPHRASE) is None


def test_threshold_and_13_gram_option(decon, shared_data):
    shared = decon.check(JOSH_REWORDED).shared_ngrams
    assert 1 <= shared < decon.check(JOSH).shared_ngrams
    strict = Decontaminator.from_folders([shared_data / "benchmarks"], n=10,
                                         min_matches=shared + 1)
    assert strict.check(JOSH_REWORDED) is None and strict.check(JOSH) is not None
    d13 = Decontaminator.from_folders([shared_data / "benchmarks" / "gsm8k"], n=13)
    assert d13.check(JOSH).benchmark == "gsm8k"
    assert d13.check(UNRELATED) is None


def test_multi_field_benchmarks_and_batch_api(decon, shared_data):
    with open(shared_data / "benchmarks" / "svamp" / "test.jsonl") as fh:
        sv = [json.loads(line) for line in fh][4]
    with open(shared_data / "benchmarks" / "mawps" / "test.jsonl") as fh:
        mw = json.loads(fh.readline())
    from jz3.data.dedup import words

    texts = [sv["Body"] + " " + sv["Question"], "Story: " + mw["input"], UNRELATED]
    got = decon.check_many([words(t) for t in texts])
    assert got[0] is not None and got[0].benchmark == "svamp"
    assert got[1] is not None and got[1].benchmark == "mawps" and got[1].idx == 0
    assert got[2] is None


def test_missing_question_field_names_the_file(tmp_path):
    bench = tmp_path / "gsm8k"
    bench.mkdir()
    (bench / "test.jsonl").write_text('{"question": "ok"}\n{"q": "x"}\n')
    with pytest.raises(ValueError, match=r"test.jsonl:2"):
        Decontaminator.from_folders([tmp_path])


def test_registry_formats_and_bad_files_name_file_and_line(tmp_path):
    from jz3.benchmarks import BenchmarkFormatError

    tab = tmp_path / "tabmwp"
    tab.mkdir()
    q = ("Look at the table of apples sold each day by the corner shop and find how many "
         "apples were sold on Monday and Tuesday together")
    (tab / "problems_test.json").write_text(json.dumps(
        {"7": {"question": q, "table": "t", "table_title": None, "choices": None, "unit": None,
               "answer": "5"}}))
    d = Decontaminator.from_folders([tmp_path], n=10)
    assert d.sizes == {"tabmwp": 1} and d.check("Today: " + q + "?").benchmark == "tabmwp"
    bad = tmp_path / "gsm8k"
    bad.mkdir()
    (bad / "test.jsonl").write_bytes(b'{"question": "ok", "answer": "1"}\n{"question": "\xff"}\n')
    with pytest.raises(BenchmarkFormatError, match=f"{bad / 'test.jsonl'}:2: invalid UTF-8"):
        Decontaminator.from_folders([tmp_path], n=10)
    (bad / "test.jsonl").write_text('{"problem": "no question field"}\n')
    with pytest.raises(BenchmarkFormatError, match=r"test.jsonl:1: no question field \['question'\]"):
        Decontaminator.from_folders([bad], n=10)
