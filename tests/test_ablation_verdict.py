"""The ablation's verdict with seed spread (jz3.ablation.verdict) and the guard that the two
arms differ only in their data (jz3.ablation.arms.check_same_recipe)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from jz3.ablation.verdict import Arm, BenchLoss, ModelScore, Verdict, compare_arms, compare_rows


def _row(arm, seed, **loss):
    """A scored model with `loss_per_token` per benchmark (10 items of 10 tokens)."""
    return ModelScore(Arm(arm), seed, 64, 1, {b.replace("_", "-"): BenchLoss(x, 1.0, 100, 10)
                                              for b, x in loss.items()})


def test_gap_beyond_the_larger_spread_is_a_win():
    c = compare_arms([5.20, 5.22], [5.66, 5.69])
    assert c.synthetic_mean == pytest.approx(5.21) and c.raw_mean == pytest.approx(5.675)
    assert c.synthetic_spread == pytest.approx(0.02) and c.raw_spread == pytest.approx(0.03)
    assert c.gap == pytest.approx(0.465) and c.spread == pytest.approx(0.03)
    assert c.verdict is Verdict.synthetic_better
    assert compare_arms([5.7, 5.8], [5.1, 5.2]).verdict is Verdict.raw_better


def test_gap_within_the_spread_or_one_seed_is_no_verdict():
    # MATH500 in the research runs: gap 0.064 < raw spread 0.069
    c = compare_arms([5.697, 5.715], [5.735, 5.804])
    assert c.gap == pytest.approx(0.0635) and c.verdict is Verdict.within_spread
    assert compare_arms([5.0], [6.0]).verdict is Verdict.one_seed  # no spread measured
    assert compare_arms([5.0, 5.0], [5.0, 5.0]).verdict is Verdict.within_spread
    with pytest.raises(ValueError, match="at least one loss per arm"):
        compare_arms([], [5.0])


def test_compare_rows_groups_by_arm_and_benchmark():
    def row(arm, seed, g, m):
        return _row(arm, seed, gsm8k=g, math_oai=m)

    rows = {"pretrain": row("synthetic", 1, 5.2, 5.9), "pretrain_raw": row("raw", 1, 5.7, 5.1),
            "synthetic_seed2": row("synthetic", 2, 5.3, 5.8), "raw_seed2": row("raw", 2, 5.6, 5.2),
            "base": row("base", None, 9.0, 9.0)}  # a reference, not an arm
    out = compare_rows(rows)
    assert out["gsm8k"].verdict is Verdict.synthetic_better and out["gsm8k"].synthetic == [5.2, 5.3]
    assert out["math-oai"].verdict is Verdict.raw_better
    assert out["gsm8k"].gap == pytest.approx(0.4) and out["gsm8k"].raw == [5.7, 5.6]
    assert compare_rows({"pretrain": rows["pretrain"]}) == {}  # one arm: nothing to compare


def test_arms_must_differ_only_in_data_and_seed():
    from jz3.ablation.arms import check_same_recipe
    from jz3.config import compose

    st = compose(["+exp=demo"]).stages
    pre = st.pretrain
    check_same_recipe(st.pretrain_raw, pre)  # the demo's arms match
    other = dataclasses.replace(st.pretrain_raw, trainer=dataclasses.replace(
        st.pretrain_raw.trainer, seed=7, max_steps=3, lr=1.0))
    with pytest.raises(ValueError, match=r"trainer\.lr: 1\.0 vs 0\.003") as e:
        check_same_recipe(other, pre)
    assert "trainer.seed" not in str(e.value) and "max_steps" not in str(e.value)


def _items(losses, tokens=10):
    """Per-item losses (nats/token) as ItemLosses with `tokens` scored tokens each."""
    from jz3.ablation.verdict import ItemLosses

    return ItemLosses([x * tokens for x in losses], [tokens] * len(losses))


def _noisy(n, mean, sd, seed):
    import random

    r = random.Random(seed)
    return [mean + r.gauss(0, sd) for _ in range(n)]


def test_paired_bootstrap_sees_a_consistent_item_gap_the_spread_rule_misses():
    from jz3.ablation.verdict import paired_bootstrap

    base = _noisy(200, 5.0, 1.0, 0)  # item difficulty varies a lot, shared by both arms
    pairs = [(_items([b + d for b, d in zip(base, _noisy(200, 0, 0.05, s), strict=True)]),
              _items([b + 0.1 + d for b, d in zip(base, _noisy(200, 0, 0.05, 9 + s),
                                                  strict=True)]))
             for s in range(2)]
    p = paired_bootstrap(pairs)
    assert p.verdict is Verdict.synthetic_better and 0 < p.low < 0.1 < p.high < 0.2
    assert (p.seed_pairs, p.items) == (2, 200) and p.gap == pytest.approx(0.1, abs=0.02)
    assert paired_bootstrap(pairs) == p  # seeded: the same interval every time
    swapped = paired_bootstrap([(r, s) for s, r in pairs])
    assert swapped.verdict is Verdict.raw_better and swapped.high < 0


def test_paired_bootstrap_without_a_gap_is_inconclusive():
    from jz3.ablation.verdict import paired_bootstrap

    base = _noisy(100, 5.0, 1.0, 1)
    pairs = [(_items([b + d for b, d in zip(base, _noisy(100, 0, 0.2, s), strict=True)]),
              _items([b + d for b, d in zip(base, _noisy(100, 0, 0.2, 50 + s), strict=True)]))
             for s in range(3)]
    p = paired_bootstrap(pairs)
    assert p.verdict is Verdict.inconclusive and p.low < 0 < p.high
    with pytest.raises(ValueError, match="same items"):
        paired_bootstrap([(_items([1.0, 2.0]), _items([1.0]))])


def test_compare_rows_pairs_models_by_seed_and_reports_both_rules():
    rows = {"pretrain": _row("synthetic", 0, gsm8k=5.0), "pretrain_raw": _row("raw", 0, gsm8k=5.5)}
    base = _noisy(50, 5.0, 1.0, 2)
    items = {"pretrain": {"gsm8k": _items(base)},
             "pretrain_raw": {"gsm8k": _items([b + 0.5 for b in base])}}
    c = compare_rows(rows, items)["gsm8k"]
    assert c.spread_verdict is Verdict.one_seed  # one seed per arm: the spread rule says nothing
    assert c.verdict is Verdict.synthetic_better  # the item-level comparison still does
    assert c.paired.seed_pairs == 1 and c.paired.low == pytest.approx(0.5)
    assert compare_rows(rows)["gsm8k"].verdict is Verdict.one_seed  # no per-item losses
    d = c.as_dict()  # ablation.json's comparison: the enums as their values, with the verdict
    assert (d["verdict"], d["spread_verdict"], d["paired"]["verdict"]) == (
        "synthetic_better", "one_seed", "synthetic_better")


def test_ablation_result_round_trips_through_the_manifest():
    from jz3.ablation.results import AblationResult
    from jz3.provenance import jsonable
    from jz3.provenance.manifest import from_jsonable

    rows = {"pretrain": _row("synthetic", 0, gsm8k=5.0), "pretrain_raw": _row("raw", 0, gsm8k=5.5),
            "base": _row("base", None, gsm8k=7.0)}
    rows["pretrain"].accuracy = {"gsm8k": {"cot": {"accuracy": 0.5, "n": 2, "shots": 0}}}
    base = _noisy(20, 5.0, 1.0, 3)
    items = {"pretrain": {"gsm8k": _items(base)},
             "pretrain_raw": {"gsm8k": _items([b + 0.5 for b in base])}}
    res = AblationResult("a.json", rows, compare_rows(rows, items))
    raw = json.loads(json.dumps(jsonable(res)))
    assert raw["rows"]["base"]["arm"] == "base" and raw["rows"]["base"]["seed"] is None
    assert raw["rows"] == {n: r.as_dict() for n, r in rows.items()}  # ablation.json's "models"
    back = from_jsonable(AblationResult, raw, "result")
    assert back == res
    assert back.rows["pretrain"].arm is Arm.synthetic and back.rows["pretrain_raw"].accuracy is None
    assert back.comparison["gsm8k"].paired.verdict is Verdict.synthetic_better
    assert isinstance(back.rows["base"].loss["gsm8k"], BenchLoss)
    del raw["rows"]["pretrain"]["loss"]["gsm8k"]["tokens"]
    with pytest.raises(TypeError, match=r"result\.rows\.pretrain\.loss\.gsm8k.*missing fields "
                                        r"\['tokens'\]"):
        from_jsonable(AblationResult, raw, "result")
