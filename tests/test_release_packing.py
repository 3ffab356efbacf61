"""`data.packing=release` on the real SmolLM2 tokenizer: whole documents, each cut to seq_len
tokens + its EOS, greedily packed in order into padded rows of seq_len + 1; no document crosses a
row, loss masks and document boundaries follow each document."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jz3.config.data import DataConfig, DataSource, TokenizerConfig
from jz3.config.enums import Packing, TokenizerKind
from jz3.data.packed_dataset import IGNORE_INDEX, MixedPackedDataset, PackedDataset, greedy_rows
from jz3.data.packing import pack_sources
from jz3.models.gguf_import import SMOLLM2_DIR, is_imported

SEQ = 64


@pytest.fixture(scope="module")
def smol_tok():
    if not is_imported(SMOLLM2_DIR):
        pytest.fail(f"{SMOLLM2_DIR} is not imported: run `make models`")
    from jz3.data.tokenizers import load_tokenizer

    return load_tokenizer(TokenizerConfig(kind=TokenizerKind.hf, path=str(SMOLLM2_DIR)))


def _records(rng: np.random.Generator, n: int) -> list:
    words = "the sum of two primes is even unless one of them equals two so we check".split()
    out = []
    for i in range(n):
        q = " ".join(rng.choice(words, int(rng.integers(3, 25))))
        a = " ".join(rng.choice(words, int(rng.integers(2, 40 if i % 7 else 160))))
        out.append({"input": f"## Question\n{q}\n\n## Solution\n", "output": f"{a}\n#### {i}"})
    return out


@pytest.fixture(scope="module")
def packed(smol_tok, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("release")
    src = tmp / "train.jsonl"
    recs = _records(np.random.default_rng(0), 60)
    src.write_text("".join(json.dumps(r) + "\n" for r in recs))
    cfg = DataConfig(sources=[DataSource(name="s", path=str(src))],
                     tokenizer=TokenizerConfig(kind=TokenizerKind.hf, path=str(SMOLLM2_DIR)),
                     seq_len=SEQ, packed_dir=str(tmp / "packed"), num_workers=1,
                     packing=Packing.release)
    return pack_sources(cfg, smol_tok, tmp / "packed")


def test_greedy_rows_keeps_order_and_capacity():
    lens = np.array([3, 4, 2, 5, 5, 1])
    assert greedy_rows(lens, 7).tolist() == [0, 2, 4, 6]  # [3 4] [2 5] [5 1]
    assert greedy_rows(lens, 6).tolist() == [0, 1, 3, 4, 6]  # [3] [4 2] [5] [5 1]
    assert greedy_rows(np.zeros(0, np.int64), 7).tolist() == [0]


def test_release_rows_hold_whole_documents(packed, smol_tok):
    eos = smol_tok.eos_token_id
    ds = PackedDataset(packed / "s", SEQ, Packing.release)
    offs = np.load(packed / "s" / "doc_offsets.npy")
    toks = np.fromfile(packed / "s" / "tokens.bin", np.uint16).astype(np.int64)
    mask = np.fromfile(packed / "s" / "loss_mask.bin", np.uint8)
    doc_lens = np.diff(offs)
    assert ds.n_truncated > 0 and (doc_lens > SEQ + 1).sum() == ds.n_truncated
    seen = 0
    for i in range(len(ds)):
        row = ds[i]
        assert len(row["input_ids"]) == SEQ + 1
        segs = np.split(np.arange(SEQ + 1), np.cumsum(row["seq_lens"])[:-1])
        real = int(row["attention_mask"].sum())
        docs = [s for s in segs if s[0] < real]
        for s in docs:  # every segment is one whole document of the source, in order
            d = seen
            seen += 1
            full = toks[offs[d]:offs[d + 1]]
            got = row["input_ids"][s]
            assert row["position_ids"][s].tolist() == list(range(len(s)))
            assert got[-1] == eos  # truncation keeps the EOS
            if doc_lens[d] <= SEQ + 1:
                assert got.tolist() == full.tolist()
                want_mask = mask[offs[d]:offs[d + 1]].astype(bool)
            else:  # the release's cut: the first seq_len tokens, then EOS
                assert len(s) == SEQ + 1 and got[:-1].tolist() == full[:SEQ].tolist()
                want_mask = np.append(mask[offs[d]:offs[d] + SEQ], mask[offs[d + 1] - 1]) != 0
            lab = row["labels"][s]
            assert lab[0] == IGNORE_INDEX
            assert ((lab[1:] != IGNORE_INDEX) == want_mask[1:]).all()
        pad = row["input_ids"][real:]
        assert (pad == ds.pad_id).all() and (row["labels"][real:] == IGNORE_INDEX).all()
        if i + 1 < len(ds):  # greedy: the next row's first document did not fit here
            nxt = min(int(doc_lens[seen]), SEQ + 1)
            assert real + nxt > SEQ + 1
    assert seen == len(doc_lens)  # every document in exactly one row


def test_release_vs_concat_row_counts(packed):
    rel = MixedPackedDataset(packed, SEQ, names=["s"], packing=Packing.release)
    cat = MixedPackedDataset(packed, SEQ, names=["s"], packing=Packing.concat)
    one = MixedPackedDataset(packed, SEQ, names=["s"], packing=Packing.none)
    assert len(cat) < len(rel) < len(one) == 60
    assert rel[0]["input_ids"].shape == (SEQ + 1,) and cat[0]["input_ids"].shape == (SEQ,)
