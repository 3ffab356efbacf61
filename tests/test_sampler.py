"""MixtureSampler: exact resume, mixing proportions, data-parallel slices, epochs."""

from __future__ import annotations

from itertools import islice

import numpy as np
import pytest

from jz3.data.sampler import MixtureSampler

LENGTHS = [700, 130, 45]
WEIGHTS = [0.6, 0.3, 0.1]


def _take(sampler: MixtureSampler, n: int) -> list[int]:
    return list(islice(iter(sampler), n))


def test_resume_gives_exactly_the_uninterrupted_stream():
    full = _take(MixtureSampler(LENGTHS, WEIGHTS, seed=7), 5000)
    for cut in (1, 999, 1024, 1025, 3333):
        s = MixtureSampler(LENGTHS, WEIGHTS, seed=7)
        head = _take(s, cut)
        state = s.state_dict()
        assert state["consumed"] == cut and set(state) == {"consumed", "seed", "world_size",
                                                           "fingerprint"}
        resumed = MixtureSampler(LENGTHS, WEIGHTS, seed=7)
        resumed.load_state_dict(state)
        assert head + _take(resumed, 5000 - cut) == full
    assert full != _take(MixtureSampler(LENGTHS, WEIGHTS, seed=8), 5000)


def test_mixing_proportions_within_one_percent_over_1e5():
    n = 100_000
    s = MixtureSampler(LENGTHS, WEIGHTS, seed=0)
    idx = np.fromiter(islice(iter(s), n), np.int64, n)
    src = np.searchsorted(np.cumsum(LENGTHS), idx, side="right")
    frac = np.bincount(src, minlength=3) / n
    assert np.all(np.abs(frac - WEIGHTS) <= 0.01 * np.asarray(WEIGHTS)), frac
    assert all(s.source_of(k) == src[k] for k in range(0, n, 997))
    # unnormalised weights and a zero weight
    z = MixtureSampler([10, 10, 10], [2.0, 0.0, 6.0], seed=1)
    zs = np.searchsorted([10, 20, 30], _take(z, 4096), side="right")
    assert np.bincount(zs, minlength=3).tolist() == [1024, 0, 3072]  # exact at block ends
    # at every block end each source is within one sample of weight * positions
    for k in range(s.block_size, n + 1, s.block_size):
        assert np.all(np.abs(np.bincount(src[:k], minlength=3) - np.multiply(WEIGHTS, k)) < 1)


def test_each_source_is_a_fresh_permutation_every_epoch():
    lengths = [50, 20]
    s = MixtureSampler(lengths, [0.5, 0.5], seed=3, block_size=16)
    idx = np.array(_take(s, 400))
    b = idx[idx >= 50] - 50  # source 1: 200 picks = 10 epochs of 20
    epochs = b.reshape(10, 20)
    for e in epochs:
        assert sorted(e.tolist()) == list(range(20))
    assert len({tuple(e) for e in epochs}) > 1  # reshuffled between epochs


def test_data_parallel_ranks_split_the_global_stream_and_resume():
    world = 4
    full = _take(MixtureSampler(LENGTHS, WEIGHTS, seed=5), 4000)
    ranks = [MixtureSampler(LENGTHS, WEIGHTS, seed=5, rank=r, world_size=world) for r in range(world)]
    per_rank = [_take(s, 1000) for s in ranks]
    for r in range(world):
        assert per_rank[r] == full[r::world]
    states = [s.state_dict() for s in ranks]
    assert all(st["consumed"] == 4000 for st in states)
    # resume on 2 ranks with the trainer's count of consumed samples (prefetch-proof)
    more = _take(MixtureSampler(LENGTHS, WEIGHTS, seed=5), 6000)
    for r in range(2):
        s = MixtureSampler(LENGTHS, WEIGHTS, seed=5, rank=r, world_size=2)
        s.load_state_dict(ranks[0].state_dict(consumed=3000))
        assert _take(s, 1000) == more[3000 + r:5000:2]


def test_finite_length_and_bad_states():
    s = MixtureSampler(LENGTHS, WEIGHTS, seed=0, rank=1, world_size=3, num_samples=10)
    assert len(s) == 3 and len(list(iter(s))) == 3
    other = MixtureSampler([700, 130, 46], WEIGHTS, seed=0)
    with pytest.raises(ValueError, match="other data"):
        other.load_state_dict(MixtureSampler(LENGTHS, WEIGHTS).state_dict())
    with pytest.raises(ValueError, match="seed"):
        MixtureSampler(LENGTHS, WEIGHTS, seed=1).load_state_dict(
            MixtureSampler(LENGTHS, WEIGHTS, seed=2).state_dict())
    with pytest.raises(ValueError, match="no sequences"):
        MixtureSampler([0, 5], [1.0, 1.0])
    with pytest.raises(ValueError, match="rank"):
        MixtureSampler(LENGTHS, WEIGHTS, rank=2, world_size=2)
    with pytest.raises(ValueError, match="same"):
        MixtureSampler(LENGTHS, [1.0])
