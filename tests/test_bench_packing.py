"""The packing benchmark runs end to end on a small slice and reports comparable figures."""

from __future__ import annotations

import json

from jz3.bench.packing import main


def test_bench_packing_small(capsys):
    result = main(["--limit", "40", "--repeat", "1", "--trials", "1", "--seq-len", "256",
                   "--workers", "2", "--vocab-size", "512"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == result
    assert result["records"] == 120
    for k in ("ours_tokens_per_s", "baseline_tokens_per_s", "ratio"):
        assert result[k] > 0
    # same records, same tokenizer: token counts agree to within 2% (ours adds </s>, and encodes
    # input and output separately so the loss mask boundary is exact)
    assert abs(result["ours_tokens"] - result["baseline_tokens"]) < 0.02 * result["baseline_tokens"]
    assert result["ours_sequences"] >= result["baseline_sequences"]  # baseline drops the tail
