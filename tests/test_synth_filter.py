"""The filter stage end to end on real JiuZhang3.0 sample records with planted problems."""

from __future__ import annotations

import dataclasses

from jz3.config import compose
from jz3.data.records import RecordKind, read_records, write_jsonl
from jz3.synth.filter import run_filter
from tests.synth_fixtures import jiuzhang_synth_records

GSM8K_Q = ("Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast every morning and "
           "bakes muffins for her friends every day with four. She sells the remainder at the "
           "farmers' market daily for $2 per fresh duck egg. How much in dollars does she make "
           "every day at the farmers' market?")
TOOL_OK = ("```python\nprice = 12\nqty = 4\nprint(price * qty)\n```\n```output\n48\n```\n"
           "The total cost is $\\boxed{48}$.")
TOOL_BAD = ("```python\nprint(sum(range(10)))\n```\n```output\n55\n```\n"
            "The sum is $\\boxed{55}$.")


def test_filter_end_to_end(shared_data, tmp_path):
    cot = jiuzhang_synth_records(shared_data, "grade_school", 30)
    base = dict(cot[0])
    planted = [
        {**base, "id": "dup-exact", "problem": base["problem"].upper() + " "},
        {**base, "id": "dup-near", "problem": base["problem"] + " Explain briefly."},
        {**base, "id": "contam", "problem": "Consider this: " + GSM8K_Q},
        {**base, "id": "short", "problem": "2+2?"},
        {**base, "id": "tool-ok", "prompt_type": "tool",
         "problem": "A pen costs 12 dollars. How much do 4 pens cost altogether in dollars?",
         "solution": TOOL_OK, "answer": "48"},
        {**base, "id": "tool-bad", "prompt_type": "tool",
         "problem": "What is the sum of the integers from 1 to 10 inclusive, computed by code?",
         "solution": TOOL_BAD, "answer": "55"},
    ]
    src = tmp_path / "synth.jsonl"
    write_jsonl(src, cot + planted)
    with open(src, "a") as fh:
        fh.write('{"id": "broken", "problem": 3}\n')
    sec = compose([f"run_dir={tmp_path}", "stages.filter.filter.tool_timeout_s=5",
                   "stages.filter.filter.minhash_threshold=0.7"]).stages.filter
    out = tmp_path / "filter"
    res = run_filter(sec.filter, sec.sandbox, src, out)
    stats = res.stats
    assert (res.read, res.kept, res.cot, res.rejected) == (
        stats["read"], stats["kept"], str(out / "cot"), str(out / "rejected.jsonl"))
    assert stats["read"] == len(cot) + len(planted) + 1
    assert stats["read"] == stats["kept"] + stats["rejected"]
    rejected = {r["record"]["id"] if isinstance(r["record"], dict) else None: r["reason"]
                for r in read_records(out / "rejected.jsonl")}
    assert rejected["dup-exact"].startswith("duplicate_exact")
    assert rejected["dup-near"].startswith("duplicate_near")
    assert rejected["contam"].startswith("contaminated: gsm8k test #0")
    assert rejected["short"].startswith("problem_length")
    assert rejected["tool-bad"].startswith("tool_mismatch")
    assert "snippet_id" in rejected["broken"] or "missing" in rejected["broken"]
    cot_out = list(read_records(out / "cot", RecordKind.train))
    tool_out = list(read_records(out / "tool", RecordKind.train))
    assert [r["id"] for r in tool_out] == ["tool-ok"]
    assert tool_out[0]["input"].startswith("## Question\nA pen costs")
    assert tool_out[0]["input"].endswith("\n\n## Code Solution\n")
    assert tool_out[0]["output"].startswith("```python")
    assert all(r["input"].startswith("## Question\n") and r["input"].endswith("\n\n## Solution\n")
               and r["output"].strip() for r in cot_out)
    assert len(cot_out) == stats["kept_by_kind"]["cot"] and cot[0]["id"] in {
        r["id"] for r in cot_out}
    assert not (out / "manifest.json").exists()  # provenance is the pipeline runner's
    per_bench = stats["decontam_by_benchmark"]
    assert per_bench["gsm8k"] >= 1 and "math-oai" in per_bench and "svamp" in per_bench
    assert stats["reasons"]["tool_mismatch"] == 1 and res.kept_by_kind["tool"] == 1
    # rerun in-process (workers=1): same outputs, rewritten atomically, no stale rejected rows
    kept_before = (out / "cot" / "part-00000-of-00001.jsonl").read_text()
    again = run_filter(dataclasses.replace(sec.filter, workers=1), sec.sandbox, src, out).stats
    assert again["kept"] == stats["kept"] and again["reasons"] == stats["reasons"]
    assert (out / "cot" / "part-00000-of-00001.jsonl").read_text() == kept_before
    assert sum(1 for _ in open(out / "rejected.jsonl")) == stats["rejected"]
