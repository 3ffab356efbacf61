"""The release's data order: the synthetic mixture first, then the SFT data read once at the end
(`data.tail_sources`); and `data.packing=none` (one padded document per row, LESS warmup)."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from jz3.config.data import DataConfig, DataSource
from jz3.config.enums import Packing
from jz3.data.packed_dataset import IGNORE_INDEX, MixedPackedDataset, PackedDataset
from jz3.data.packing import pack_sources, read_pack_index
from jz3.data.records import write_jsonl
from jz3.data.sampler import MixtureSampler


def _take(sampler: MixtureSampler, n: int) -> list[int]:
    return list(islice(iter(sampler), n))


# ------------------------------------------------------------------ sampler
def test_tail_comes_after_the_whole_mixture_once_per_pass():
    mix, tail = [300, 120], [50, 30]
    s = MixtureSampler(mix, mix, seed=3, tail_lengths=tail)
    n_mix, n_all = sum(mix), sum(mix) + sum(tail)
    stream = _take(s, 2 * n_all)
    first, second = stream[:n_all], stream[n_all:]
    for one in (first, second):
        assert all(i < n_mix for i in one[:n_mix])  # the mixture, never a tail sequence
        assert sorted(one[n_mix:]) == list(range(n_mix, n_all))  # every tail sequence once
    # the mixture part is the plain mixture stream (as without a tail), continued in pass 2
    plain = _take(MixtureSampler(mix, mix, seed=3), 2 * n_mix)
    assert first[:n_mix] + second[:n_mix] == plain
    # shuffled inside the tail, a fresh permutation each pass; file order without tail_shuffle
    assert first[n_mix:] != list(range(n_mix, n_all)) and first[n_mix:] != second[n_mix:]
    ordered = _take(MixtureSampler(mix, mix, seed=3, tail_lengths=tail, tail_shuffle=False), n_all)
    assert ordered[n_mix:] == list(range(n_mix, n_all)) and ordered[:n_mix] == first[:n_mix]
    assert [s.in_tail(k) for k in (n_mix - 1, n_mix, n_all - 1, n_all)] == [False, True, True,
                                                                            False]
    assert s.source_of(n_all - 1) in (2, 3) and s.source_of(0) in (0, 1)


def test_natural_mix_reads_every_sequence_once_per_pass():
    mix = [300, 120, 7]
    s = MixtureSampler(mix, [1, 1, 1], seed=2, natural=True)
    assert np.allclose(s.weights, np.array(mix) / sum(mix))
    a, b = _take(s, sum(mix)), _take(s, sum(mix))
    assert sorted(a) == sorted(b) == list(range(sum(mix))) and a != b
    assert a != sorted(a)  # shuffled across sources
    with pytest.raises(ValueError, match="other data"):
        MixtureSampler(mix, mix, seed=2).load_state_dict(s.state_dict())


def test_tail_with_data_parallel_ranks_and_resume():
    mix, tail = [200, 64], [40]
    full = _take(MixtureSampler(mix, [1, 1], seed=5, tail_lengths=tail), 304)
    world = 4
    ranks = [_take(MixtureSampler(mix, [1, 1], seed=5, rank=r, world_size=world,
                                  tail_lengths=tail), 304 // world) for r in range(world)]
    assert [ranks[k % world][k // world] for k in range(304)] == full
    s = MixtureSampler(mix, [1, 1], seed=5, tail_lengths=tail)
    head = _take(s, 250)
    resumed = MixtureSampler(mix, [1, 1], seed=5, tail_lengths=tail)
    resumed.load_state_dict(s.state_dict())
    assert head + _take(resumed, 54) == full
    # a state saved without the tail (or with another tail) is refused
    with pytest.raises(ValueError, match="other data"):
        MixtureSampler(mix, [1, 1], seed=5).load_state_dict(s.state_dict())
    with pytest.raises(ValueError, match="other data"):
        MixtureSampler(mix, [1, 1], seed=5, tail_lengths=tail, tail_shuffle=False
                       ).load_state_dict(s.state_dict())


# ------------------------------------------------------------------ packed data, trainer path
def _rows(path: Path, n: int) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(x) for x in islice(f, n)]


@pytest.fixture(scope="module")
def packed(tmp_path_factory, shared_data, tiny_tokenizer):
    d = tmp_path_factory.mktemp("order")
    s = shared_data / "jiuzhang3_samples"
    write_jsonl(d / "cot.jsonl", _rows(s / "cot_pretrain_sampled.jsonl", 60))
    write_jsonl(d / "tool.jsonl", _rows(s / "tool_pretrain_sampled.jsonl", 30))
    sft = _rows(s / "finetune_sampled.jsonl", 40)
    write_jsonl(d / "sft.jsonl", sft)
    cfg = DataConfig(sources=[DataSource("synth_cot", str(d / "cot.jsonl")),
                              DataSource("synth_tool", str(d / "tool.jsonl"))],
                     tail_sources=[DataSource("sft", str(d / "sft.jsonl"))],
                     natural_mix=True, seq_len=128, num_workers=1)
    return cfg, pack_sources(cfg, tiny_tokenizer, d / "packed"), sft


def test_pretraining_run_ends_with_every_sft_sequence(packed):
    """The trainer's data path (open_dataset + build_train_data): one pass = the CoT + tool
    mixture, then the SFT sequences; the last steps of a one-epoch run hold exactly the SFT
    data, and the step count covers both."""
    from jz3.config.trainer import TrainerConfig
    from jz3.train.data import build_train_data, open_dataset
    from jz3.train.entry import total_steps

    cfg, out, _ = packed
    index = read_pack_index(out)
    assert index["sources"] == ["synth_cot", "synth_tool", "sft"] and index["tail"] == ["sft"]
    ds = open_dataset(cfg, out)
    n_mix, n_sft = ds.lengths[0] + ds.lengths[1], ds.lengths[2]
    assert n_sft > 0 and len(ds) == n_mix + n_sft
    gbs = 8
    steps = total_steps(TrainerConfig(epochs=1, global_batch_size=gbs, max_steps=-1), len(ds))
    assert steps == -(-(n_mix + n_sft) // gbs)
    per_rank = []
    for r in range(2):  # two data-parallel ranks
        td = build_train_data(cfg, ds, micro_batch=4, seed=0, dp_rank=r, dp_world=2)
        per_rank.append(_take(td.sampler, -(-(n_mix + n_sft) // 2)))
    stream = [per_rank[k % 2][k // 2] for k in range(n_mix + n_sft)]
    sources = [ds.locate(i)[0] for i in stream]
    assert sources[:n_mix].count(2) == 0 and set(sources[n_mix:]) == {2}
    assert sorted(stream[n_mix:]) == list(range(n_mix, n_mix + n_sft))
    # the natural mixture: every CoT and tool sequence exactly once, CoT and tool interleaved
    assert sorted(stream[:n_mix]) == list(range(n_mix))
    assert sources[:n_mix] != sorted(sources[:n_mix])


def test_sft_rows_keep_the_loss_on_outputs(packed, tiny_tokenizer):
    cfg, out, sft = packed
    ds = PackedDataset(out / "sft", 4096, packing=Packing.none)
    assert len(ds) == len(sft)
    x = ds[0]
    ids, lab = x["input_ids"], x["labels"]
    target = tiny_tokenizer.decode(ids[lab != IGNORE_INDEX], skip_special_tokens=True)
    assert target.strip() == sft[0]["output"].strip()


def test_empty_tail_path_is_an_error_naming_the_key(packed, tiny_tokenizer, tmp_path):
    cfg, _, _ = packed
    bad = DataConfig(sources=cfg.sources, tail_sources=[DataSource("sft", "")], num_workers=1)
    with pytest.raises(ValueError, match=r"data.tail_sources\[0\] \('sft'\): path is empty"):
        pack_sources(bad, tiny_tokenizer, tmp_path / "p")
    dup = DataConfig(sources=cfg.sources, tail_sources=[DataSource("synth_cot", "x")])
    with pytest.raises(ValueError, match="unique"):
        pack_sources(dup, tiny_tokenizer, tmp_path / "p")


# ------------------------------------------------------------------ no packing (LESS warmup)
def test_no_packing_gives_one_truncated_document_per_row(packed):
    _, out, _ = packed
    L = 96
    ds = PackedDataset(out / "synth_cot", L, packing=Packing.none)
    off = np.load(out / "synth_cot" / "doc_offsets.npy")
    tokens = np.fromfile(out / "synth_cot" / "tokens.bin", np.uint16).astype(np.int64)
    assert len(ds) == len(off) - 1 == 60 < len(PackedDataset(out / "synth_cot", L))
    for i in range(len(ds)):
        x = ds[i]
        n = min(int(off[i + 1] - off[i]), L)
        assert np.array_equal(x["input_ids"][:n], tokens[off[i]:off[i] + n])  # its head
        assert x["attention_mask"].sum() == n and (x["labels"][n:] == IGNORE_INDEX).all()
        assert x["seq_lens"][0] == n and x["position_ids"][n - 1] == n - 1
    mixed = MixedPackedDataset(out, L, names=["synth_cot", "synth_tool"],
                               packing=Packing.none)
    assert mixed.lengths == [60, 30]


def test_no_packing_sets_the_warmup_step_count(packed):
    """LESS: steps = epochs x examples / 32, whatever their lengths."""
    from dataclasses import replace

    from jz3.config.trainer import TrainerConfig
    from jz3.train.data import open_dataset
    from jz3.train.entry import total_steps

    cfg, out, _ = packed
    one = replace(cfg, sources=cfg.sources[:1], tail_sources=[], packing=Packing.none,
                  seq_len=2048)
    ds = open_dataset(one, out)
    t = TrainerConfig(epochs=4, global_batch_size=32, max_steps=-1)
    assert total_steps(t, len(ds)) == -(-4 * 60 // 32)
