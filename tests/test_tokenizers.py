"""Tokenizers: train sentencepiece on the shared samples, load it every supported way, offline."""

from __future__ import annotations

import json

import pytest

from jz3.config.data import TokenizerConfig
from jz3.config.enums import TokenizerKind
from jz3.data.tokenizers import encode_batch, load_tokenizer, spm_processor, train_sentencepiece

TEXT = "## Question\nIf x + 3 = 12, what is x?\n\n## Solution\nx = 12 - 3 = 9. \\boxed{9}"


def test_trained_tokenizer_round_trip(tiny_tokenizer, tiny_tokenizer_dir):
    tok = tiny_tokenizer
    assert len(tok) == 2048
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (3, 1, 2, 0)
    ids = encode_batch(tok, [TEXT])[0]
    assert tok.decode(ids) == TEXT
    assert "9" in tok.convert_ids_to_tokens(ids)  # split_digits: digits are single pieces
    # unseen characters survive through byte fallback
    assert tok.decode(encode_batch(tok, ["∮ 漢字 🙂"])[0]) == "∮ 漢字 🙂"
    sp = spm_processor(tok)
    assert sp is not None and sp.encode(TEXT) == ids  # raw processor agrees with the HF wrapper
    meta = json.loads((tiny_tokenizer_dir / "jz3_tokenizer.json").read_text())
    assert meta["vocab_size"] == 2048 and len(meta["trained_on"]) == 3


def test_load_from_model_file_folder_and_hf_kind(tiny_tokenizer_dir, tiny_tokenizer):
    ids = encode_batch(tiny_tokenizer, [TEXT])[0]
    for cfg in (TokenizerConfig(path=str(tiny_tokenizer_dir / "tokenizer.model")),
                TokenizerConfig(path=str(tiny_tokenizer_dir)),
                TokenizerConfig(kind=TokenizerKind.hf, path=str(tiny_tokenizer_dir))):
        tok = load_tokenizer(cfg)
        assert encode_batch(tok, [TEXT])[0] == ids, cfg
        assert tok.pad_token_id is not None


def test_load_bare_spm_model_without_hf_files(tmp_path, tiny_tokenizer_dir, tiny_tokenizer):
    (tmp_path / "tokenizer.model").write_bytes((tiny_tokenizer_dir / "tokenizer.model").read_bytes())
    tok = load_tokenizer(TokenizerConfig(path=str(tmp_path / "tokenizer.model")))
    assert encode_batch(tok, [TEXT])[0] == encode_batch(tiny_tokenizer, [TEXT])[0]
    assert tok.pad_token == "<pad>"


def test_missing_paths_are_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.tokenizer.path"):
        load_tokenizer(TokenizerConfig(path=str(tmp_path / "none")))
    with pytest.raises(ValueError, match="HF tokenizer folder is required"):
        load_tokenizer(TokenizerConfig(kind=TokenizerKind.hf))
    with pytest.raises(ValueError, match="train_files"):
        load_tokenizer(TokenizerConfig(train_files=[]))


def test_train_from_config_then_reuse(tmp_path, shared_data):
    f = str(shared_data / "jiuzhang3_samples" / "tool_pretrain_sampled.jsonl")
    cfg = TokenizerConfig(train_files=[f], vocab_size=512, save_dir=str(tmp_path / "tok"),
                          train_max_sentences=300)
    tok = load_tokenizer(cfg)
    assert len(tok) == 512 and tok.decode(encode_batch(tok, [TEXT])[0]) == TEXT
    stamp = (tmp_path / "tok" / "tokenizer.model").stat().st_mtime_ns
    assert train_sentencepiece([f], tmp_path / "tok", 512) == tmp_path / "tok"  # already there
    assert (tmp_path / "tok" / "tokenizer.model").stat().st_mtime_ns == stamp
