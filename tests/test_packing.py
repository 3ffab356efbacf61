"""Packing round trip on the real JiuZhang3.0 samples: documents, loss mask, sequences, batches."""

from __future__ import annotations

import json
import pickle
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch

from jz3.config.data import DataConfig, DataSource
from jz3.config.enums import OnError
from jz3.data.packed_dataset import (
    IGNORE_INDEX,
    MixedPackedDataset,
    PackedDataset,
    block_causal_mask,
    collate,
)
from jz3.data.packing import (
    DocEncoder,
    EncoderSpec,
    encoder_spec,
    pack_sources,
    read_meta,
    read_pack_index,
    to_train_example,
)
from jz3.data.records import RecordError, write_jsonl
from jz3.data.tokenizers import spm_processor

N = 120  # records per source: small and fast, still thousands of tokens


def _head(path: Path, n: int):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in islice(fh, n)]


@pytest.fixture(scope="module")
def sources(tmp_path_factory, shared_data):
    d = tmp_path_factory.mktemp("src")
    s = shared_data / "jiuzhang3_samples"
    cot = _head(s / "cot_pretrain_sampled.jsonl", N)
    tool = _head(s / "tool_pretrain_sampled.jsonl", N)
    corpus = [{"text": r["text"]} for r in _head(shared_data / "corpus" / "judson-aata.jsonl", 40)]
    kd = [{"id": f"k{i}", "snippet_id": f"s{i}", "prompt_type": "grade_school", "model": "t",
           "prompt": r["input"], "completion": r["output"], "problem": "p", "solution": "s"}
          for i, r in enumerate(_head(s / "finetune_sampled.jsonl", N))]
    write_jsonl(d / "cot.jsonl", cot)
    write_jsonl(d / "tool" / "part-00000-of-00002.jsonl", tool[: N // 2])
    write_jsonl(d / "tool" / "part-00001-of-00002.jsonl", tool[N // 2:])
    write_jsonl(d / "text.jsonl", corpus)
    write_jsonl(d / "kd.jsonl", kd)
    expected = {
        "cot": [(r["input"], r["output"]) for r in cot],
        "tool": [(r["input"], r["output"]) for r in tool],
        "text": [("", r["text"]) for r in corpus],
        "kd": [(r["prompt"], r["completion"]) for r in kd],
    }
    cfg = DataConfig(sources=[DataSource("cot", str(d / "cot.jsonl"), 2.0),
                              DataSource("tool", str(d / "tool"), 1.0),
                              DataSource("text", str(d / "text.jsonl"), 0.5),
                              DataSource("kd", str(d / "kd.jsonl"), 1.0)],
                     num_workers=2)
    return cfg, expected


@pytest.fixture(scope="module")
def packed(tmp_path_factory, sources, tiny_tokenizer):
    cfg, _ = sources
    return pack_sources(cfg, tiny_tokenizer, tmp_path_factory.mktemp("packed"))


def test_documents_round_trip_and_loss_mask_on_outputs_only(packed, sources, tiny_tokenizer):
    _, expected = sources
    sp = spm_processor(tiny_tokenizer)
    bos, eos = tiny_tokenizer.bos_token_id, tiny_tokenizer.eos_token_id
    for name, docs in expected.items():
        meta = read_meta(packed / name)
        assert meta["n_docs"] == len(docs) and meta["dtype"] == "uint16"
        tokens = np.fromfile(packed / name / "tokens.bin", np.uint16).astype(np.int64)
        mask = np.fromfile(packed / name / "loss_mask.bin", np.uint8)
        off = np.load(packed / name / "doc_offsets.npy")
        assert off[0] == 0 and off[-1] == len(tokens) == len(mask) == meta["n_tokens"]
        assert int(mask.sum()) == meta["n_target_tokens"]
        for d, (inp, out) in enumerate(docs):
            ids, m = tokens[off[d]:off[d + 1]], mask[off[d]:off[d + 1]]
            assert ids[0] == bos and ids[-1] == eos and m[0] == 0 and m[-1] == 1
            assert sp.decode(ids[1:-1].tolist()) == inp + out
            # the loss mask is one contiguous block: exactly the output's tokens, then </s>
            first = int(np.argmax(m))
            assert m[first:].all() and not m[:first].any()
            assert sp.decode(ids[1:first].tolist()) == inp
            assert sp.decode(ids[first:-1].tolist()) == out


def test_sequences_cover_tokens_with_boundaries(packed, sources):
    seq_len = 256
    for name in sources[1]:
        ds = PackedDataset(packed / name, seq_len)
        tokens = np.fromfile(packed / name / "tokens.bin", np.uint16).astype(np.int64)
        mask = np.fromfile(packed / name / "loss_mask.bin", np.uint8).astype(bool)
        starts = set(np.load(packed / name / "doc_offsets.npy")[:-1].tolist())
        assert len(ds) == -(-len(tokens) // seq_len)
        real_ids = []
        for i in range(len(ds)):
            x = ds[i]
            real = x["attention_mask"].astype(bool)
            assert all(len(v) == seq_len for k, v in x.items() if k != "seq_lens")
            assert x["seq_lens"].sum() == seq_len and (x["seq_lens"] > 0).all()
            real_ids.append(x["input_ids"][real])
            # padding never enters the loss; no label outside the loss mask
            lab = x["labels"]
            assert (lab[~real] == IGNORE_INDEX).all()
            g = i * seq_len + np.arange(real.sum())
            trainable = mask[g].copy()
            seg_starts = np.concatenate([[0], np.cumsum(x["seq_lens"])[:-1]])
            # segment starts: first token of the row and every document start inside it
            expect_starts = [0] + [int(p - i * seq_len) for p in g if p in starts and p % seq_len]
            if not real.all():
                expect_starts.append(int(real.sum()))
            assert seg_starts.tolist() == sorted(set(expect_starts))
            trainable[seg_starts[seg_starts < real.sum()]] = False  # never predicted across docs
            assert np.array_equal(lab[real] != IGNORE_INDEX, trainable)
            assert np.array_equal(lab[real][trainable], x["input_ids"][real][trainable])
            # positions restart at 0 at each segment
            pos = x["position_ids"]
            assert (pos[seg_starts] == 0).all()
            assert np.array_equal(pos, np.concatenate([np.arange(n) for n in x["seq_lens"]]))
        assert np.array_equal(np.concatenate(real_ids), tokens)
        assert (~ds[len(ds) - 1]["attention_mask"].astype(bool)).sum() == (-len(tokens)) % seq_len


def test_mixed_dataset_collate_and_block_mask(packed, sources):
    ds = MixedPackedDataset(packed, 64)
    assert ds.names == list(sources[1]) and len(ds) == sum(ds.lengths)
    assert ds.weights == {"cot": 2.0, "tool": 1.0, "text": 0.5, "kd": 1.0}
    assert ds.locate(ds.lengths[0]) == (1, 0)
    np.testing.assert_array_equal(ds[ds.lengths[0] + 3]["input_ids"], ds.sources[1][3]["input_ids"])
    with pytest.raises(IndexError):
        ds[len(ds)]
    blob = pickle.dumps(ds)  # DataLoader workers: memory maps are reopened, not copied
    assert len(blob) < 20_000
    np.testing.assert_array_equal(pickle.loads(blob)[7]["labels"], ds[7]["labels"])
    items = [ds[i] for i in (0, 5, len(ds) - 1)]
    b = collate(items)
    assert b["input_ids"].shape == b["labels"].shape == b["segment_ids"].shape == (3, 64)
    assert b["input_ids"].dtype == torch.int64 and b["cu_seqlens"].dtype == torch.int32
    lens = np.concatenate([x["seq_lens"] for x in items])
    assert b["cu_seqlens"].tolist() == [0] + np.cumsum(lens).tolist()
    assert b["cu_seqlens"][-1] == 3 * 64 and b["max_seqlen"] == lens.max()
    m = block_causal_mask(b["segment_ids"])
    assert m.shape == (3, 1, 64, 64)
    for r, x in enumerate(items):
        seg = np.repeat(np.arange(len(x["seq_lens"])), x["seq_lens"])
        want = (seg[:, None] == seg[None, :]) & np.tri(64, dtype=bool)
        assert np.array_equal(m[r, 0].numpy(), want)


def test_deterministic_across_worker_counts_and_idempotent(tmp_path, packed, sources,
                                                           tiny_tokenizer):
    cfg, _ = sources
    one = DataConfig(sources=cfg.sources, num_workers=1)
    out = pack_sources(one, tiny_tokenizer, tmp_path / "p1")
    for name in sources[1]:
        for f in ("tokens.bin", "loss_mask.bin", "doc_offsets.npy"):
            assert (out / name / f).read_bytes() == (packed / name / f).read_bytes(), (name, f)
    stamp = {n: (out / n / "tokens.bin").stat().st_mtime_ns for n in sources[1]}
    m1 = (out / "pack.json").stat().st_mtime_ns
    pack_sources(one, tiny_tokenizer, out)  # up to date: nothing rewritten
    assert {n: (out / n / "tokens.bin").stat().st_mtime_ns for n in sources[1]} == stamp
    assert (out / "pack.json").stat().st_mtime_ns == m1
    # an interrupted source (no meta.json) is packed again; the others are skipped
    (out / "tool" / "meta.json").unlink()
    pack_sources(one, tiny_tokenizer, out)
    assert (out / "cot" / "tokens.bin").stat().st_mtime_ns == stamp["cot"]
    assert (out / "tool" / "tokens.bin").read_bytes() == (packed / "tool" / "tokens.bin").read_bytes()
    assert read_pack_index(out)["counts"]["tool"]["n_docs"] == N


def test_records_as_text_trains_the_whole_record(tmp_path, packed, sources, tiny_tokenizer):
    """`data.records_as_text`: an {input, output} record is one text, loss on every token."""
    cfg, expected = sources
    one = DataConfig(sources=[s for s in cfg.sources if s.name == "cot"], num_workers=1,
                     records_as_text=True)
    out = pack_sources(one, tiny_tokenizer, tmp_path / "as_text")
    sp = spm_processor(tiny_tokenizer)
    tokens = np.fromfile(out / "cot" / "tokens.bin", np.uint16).astype(np.int64)
    mask = np.fromfile(out / "cot" / "loss_mask.bin", np.uint8)
    off = np.load(out / "cot" / "doc_offsets.npy")
    for d, (inp, outp) in enumerate(expected["cot"]):
        ids, m = tokens[off[d]:off[d + 1]], mask[off[d]:off[d + 1]]
        assert sp.decode(ids[1:-1].tolist()) == inp + outp
        assert m[0] == 0 and m[1:].all()  # all but the BOS: the input is trained on too
    assert read_meta(out / "cot")["n_target_tokens"] > read_meta(packed / "cot")["n_target_tokens"]
    assert read_meta(out / "cot")["config_hash"] != read_meta(packed / "cot")["config_hash"]


def test_bad_records_raise_or_go_to_quarantine(tmp_path, tiny_tokenizer):
    f = tmp_path / "mixed.jsonl"
    f.write_text("\n".join([json.dumps({"input": "Q: 1+1?", "output": "2"}), "{broken",
                            json.dumps({"input": "Q", "output": 5}),
                            json.dumps({"prompt": "P", "completion": ""}),
                            json.dumps({"text": "all loss"})]) + "\n")
    cfg = DataConfig(sources=[DataSource("m", str(f))], num_workers=1)
    with pytest.raises(RecordError, match=r"mixed.jsonl:2: malformed JSON"):
        pack_sources(cfg, tiny_tokenizer, tmp_path / "raise")
    assert read_pack_index(tmp_path / "raise") is None and read_meta(tmp_path / "raise" / "m") is None
    cfg.on_error = OnError.quarantine
    out = pack_sources(cfg, tiny_tokenizer, tmp_path / "q")
    meta = read_meta(out / "m")
    assert meta["n_docs"] == 2 and meta["records"]["read"] == 5 and meta["records"]["rejected"] == 3
    rej = [json.loads(x) for x in (out / "m" / "rejected.jsonl").read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in rej] == [(2, None), (3, "output"), (4, "completion")]
    with pytest.raises(ValueError, match="no source"):
        pack_sources(DataConfig(), tiny_tokenizer, tmp_path / "none")


def test_to_train_example_mapping():
    assert to_train_example({"text": "t", "id": "x"}) == {"text": "t"}
    assert to_train_example({"input": "i", "output": "o"}) == {"input": "i", "output": "o"}
    kd = {"prompt": "p", "completion": "c", "problem": "q", "solution": "s"}
    assert to_train_example(kd) == {"input": "p", "output": "c"}
    with pytest.raises(ValueError, match="field 'output': missing"):
        to_train_example({"input": "i"})


def test_hf_fallback_encoder_matches_decode(tiny_tokenizer):
    """Without a tokenizer.model the fast tokenizer's batch call is used; same layout."""
    spec = encoder_spec(tiny_tokenizer)
    assert spec.spm_file is not None  # the fast path is taken when it can be
    hf = DocEncoder(EncoderSpec(None, tiny_tokenizer, spec.bos_id, spec.eos_id))
    pairs = [("", "Prove that 2 + 2 = 4."), ("## Question\nx?\n", "## Solution\n42")]
    ids, mask, lens = hf.encode(pairs)
    assert lens.sum() == len(ids) == len(mask)
    d0, d1 = ids[: lens[0]], ids[lens[0]:]
    assert tiny_tokenizer.decode(d0, skip_special_tokens=True) == pairs[0][1]
    assert mask[: lens[0]].tolist() == [0] + [1] * (lens[0] - 1)
    m1 = mask[lens[0]:]
    assert tiny_tokenizer.decode(d1[m1 == 0], skip_special_tokens=True) == pairs[1][0]
    assert tiny_tokenizer.decode(d1[m1 == 1], skip_special_tokens=True) == pairs[1][1]


def test_dataloader_resume_with_workers_gives_the_same_batches(packed):
    """Trainer-style use: DataLoader workers prefetch, the checkpoint stores the trainer's count."""
    from torch.utils.data import DataLoader

    from jz3.data.sampler import MixtureSampler

    ds = MixedPackedDataset(packed, 64)
    weights = [ds.weights[n] for n in ds.names]

    def batches(consumed: int, n: int, workers: int):
        s = MixtureSampler(ds.lengths, weights, seed=11)
        if consumed:
            s.load_state_dict(MixtureSampler(ds.lengths, weights, seed=11)
                              .state_dict(consumed=consumed))
        loader = DataLoader(ds, batch_size=4, sampler=s, collate_fn=collate, num_workers=workers)
        return [b["input_ids"] for b in islice(iter(loader), n)]

    full = batches(0, 6, workers=0)
    resumed = batches(3 * 4, 3, workers=2)  # 3 steps of 4 sequences were consumed
    for a, b in zip(full[3:], resumed, strict=True):
        assert torch.equal(a, b)


def test_token_dtype_and_bad_dataset_dirs(tmp_path, packed):
    from jz3.data.packing import token_dtype

    assert token_dtype(2048) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(128_256) == np.uint32  # Llama-3
    with pytest.raises(FileNotFoundError, match="no packed source"):
        PackedDataset(tmp_path, 64)
    with pytest.raises(ValueError, match="seq_len"):
        PackedDataset(packed / "cot", 1)
    with pytest.raises(FileNotFoundError, match="pass the source names"):
        MixedPackedDataset(tmp_path, 64)
