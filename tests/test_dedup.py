"""Exact and MinHash-LSH near-duplicate detection."""

from __future__ import annotations

import json
import random

import numpy as np

from jz3.data.dedup import ExactDeduper, NearDeduper, jaccard, words


def _problems(shared_data, n):
    with open(shared_data / "gsm8k" / "train.jsonl") as fh:
        return [json.loads(next(fh))["question"] for _ in range(n)]


def test_exact_dedup_normalises_case_space_punctuation():
    d = ExactDeduper()
    assert d.check_add("a", "What is 2 + 2?") is None
    assert d.check_add("b", "what  is 2+2") == "a"
    assert d.check_add("c", "What is 2 + 3?") is None
    assert len(d) == 2


def test_minhash_estimates_jaccard(shared_data):
    probs = _problems(shared_data, 40)
    nd = NearDeduper(num_perm=128, shingle=3)
    rng = random.Random(0)
    for p in probs[:10]:
        w = p.split()
        q = list(w)
        for i in rng.sample(range(len(w)), k=max(1, len(w) // 10)):
            q[i] = "zzz"
        q = " ".join(q)
        sig = nd.signatures([words(p), words(q)])
        est = float(np.mean(sig[0] == sig[1]))
        assert abs(est - jaccard(p, q, shingle=3)) < 0.2


def test_near_duplicates_removed_distinct_kept(shared_data):
    probs = _problems(shared_data, 200)
    nd = NearDeduper(threshold=0.7, num_perm=128, shingle=5)
    kept = [p for i, p in enumerate(probs) if nd.check_add(f"p{i}", p) is None]
    assert len(kept) == len(set(probs))  # GSM8K train questions are distinct
    near = probs[5].replace("?", ", in total?")  # one small edit at the end
    assert jaccard(near, probs[5]) > 0.7
    assert nd.check_add("near", near) == "p5"
    assert nd.check_add("same", probs[7].upper()) == "p7"
    assert nd.check_add("new", "A completely different problem about triangles and circles "
                               "inscribed in squares of side 4.") is None
