"""The ablation's verdict with seed spread (jz3.pipeline.ablation) and the guard that the two
arms differ only in their data (jz3.pipeline.stages.check_same_recipe)."""

from __future__ import annotations

import dataclasses

import pytest

from jz3.pipeline.ablation import Verdict, compare_arms, compare_rows


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
        return {"arm": arm, "seed": seed, "loss": {"gsm8k": {"loss_per_token": g},
                                                   "math-oai": {"loss_per_token": m}}}

    rows = {"pretrain": row("synthetic", 1, 5.2, 5.9), "pretrain_raw": row("raw", 1, 5.7, 5.1),
            "synthetic_seed2": row("synthetic", 2, 5.3, 5.8), "raw_seed2": row("raw", 2, 5.6, 5.2)}
    out = compare_rows(rows)
    assert out["gsm8k"]["verdict"] == "synthetic_better" and out["gsm8k"]["synthetic"] == [5.2, 5.3]
    assert out["math-oai"]["verdict"] == "raw_better"
    assert out["gsm8k"]["gap"] == pytest.approx(0.4)
    assert compare_rows({"pretrain": rows["pretrain"]}) == {}  # one arm: nothing to compare


def test_arms_must_differ_only_in_data_and_seed():
    from jz3.config import compose
    from jz3.pipeline.stages import check_same_recipe
    from jz3.provenance import jsonable

    st = compose(["+exp=demo"]).stages
    pre = jsonable(st.pretrain)
    check_same_recipe(st.pretrain_raw, pre)  # the demo's arms match
    other = dataclasses.replace(st.pretrain_raw, trainer=dataclasses.replace(
        st.pretrain_raw.trainer, seed=7, max_steps=3, lr=1.0))
    with pytest.raises(ValueError, match=r"trainer\.lr: 1\.0 vs 0\.003") as e:
        check_same_recipe(other, pre)
    assert "trainer.seed" not in str(e.value) and "max_steps" not in str(e.value)
