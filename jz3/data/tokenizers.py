"""Tokenizers: train a sentencepiece model for tiny runs, or load one from a local path.

Everything downstream gets a `transformers.PreTrainedTokenizerBase`, so generation, padding and
`save_pretrained` work the same for a trained sentencepiece model and a real checkpoint's
tokenizer. Nothing is downloaded: paths are local, `local_files_only=True`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence

from jz3.config.data import TokenizerConfig
from jz3.config.enums import TokenizerKind

log = logging.getLogger(__name__)

SPM_FILE = "tokenizer.model"
PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"


def _texts_of(files: Sequence[str], limit: int) -> Iterator[str]:
    """Text of each record: `text`, or `input`+`output`, or `question`+`answer`."""
    from jz3.data.records import read_records

    n = 0
    for rec in read_records(list(files)):
        if "text" in rec:
            text = rec["text"]
        elif "output" in rec:
            text = rec.get("input", "") + rec["output"]
        else:
            text = "\n".join(str(v) for v in rec.values() if isinstance(v, str))
        if text.strip():
            yield text
            n += 1
            if n >= limit:
                return


def train_sentencepiece(files: Sequence[str], out_dir: str | os.PathLike, vocab_size: int = 2048,
                        model_type: str = "bpe", max_sentences: int = 200_000) -> Path:
    """Train a byte-fallback sentencepiece model on record files; writes `out_dir/tokenizer.model`
    and an HF tokenizer folder in `out_dir`. Safe to call from several ranks (file lock)."""
    import sentencepiece as spm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / "tokenizer_config.json").exists():
            return out
        prefix = out / ".spm_tmp"
        spm.SentencePieceTrainer.train(
            sentence_iterator=_texts_of(files, max_sentences), model_prefix=str(prefix),
            vocab_size=vocab_size, model_type=model_type, byte_fallback=True, split_digits=True,
            unk_id=0, bos_id=1, eos_id=2, pad_id=3, unk_piece=UNK, bos_piece=BOS, eos_piece=EOS,
            pad_piece=PAD, num_threads=os.cpu_count() or 1, max_sentence_length=1 << 20,
            character_coverage=0.9999, normalization_rule_name="identity",
            remove_extra_whitespaces=False, minloglevel=2,
        )
        os.replace(f"{prefix}.model", out / SPM_FILE)
        Path(f"{prefix}.vocab").unlink(missing_ok=True)
        tok = _hf_from_spm(out)
        tok.save_pretrained(out)
        (out / "jz3_tokenizer.json").write_text(json.dumps(
            {"trained_on": [str(f) for f in files], "vocab_size": vocab_size,
             "model_type": model_type}, indent=2))
        log.info("trained sentencepiece tokenizer (vocab %d) in %s", vocab_size, out)
    return out


def _hf_from_spm(folder: Path):
    from transformers import LlamaTokenizer

    tok = LlamaTokenizer.from_pretrained(str(folder), local_files_only=True, legacy=False)
    tok.pad_token = PAD
    return tok


def load_tokenizer(cfg: TokenizerConfig):
    """The tokenizer a config names; trains the sentencepiece model first if it is missing."""
    from transformers import AutoTokenizer

    if cfg.kind == TokenizerKind.hf:
        if not cfg.path:
            raise ValueError("data.tokenizer.path: an HF tokenizer folder is required for kind=hf")
        p = Path(cfg.path)
        if not p.exists():
            raise FileNotFoundError(f"data.tokenizer.path: {p} does not exist")
        tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return tok
    path = Path(cfg.path) if cfg.path else None
    if path is not None and path.exists():
        folder = path.parent if path.is_file() else path
        if (folder / "tokenizer_config.json").exists():
            tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            return tok
        return _hf_from_spm(folder)
    if path is not None:
        raise FileNotFoundError(f"data.tokenizer.path: {path} does not exist")
    if not cfg.train_files:
        raise ValueError("data.tokenizer: give a path, or train_files to train a sentencepiece model")
    folder = train_sentencepiece(cfg.train_files, cfg.save_dir, cfg.vocab_size, cfg.model_type,
                                 cfg.train_max_sentences)
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def encode_batch(tok, texts: Iterable[str]) -> List[List[int]]:
    """Token ids of each text, without special tokens."""
    return tok(list(texts), add_special_tokens=False)["input_ids"]


def spm_processor(tok) -> Optional[object]:
    """The raw `SentencePieceProcessor` behind a tokenizer folder, when there is one (fast path)."""
    import sentencepiece as spm

    folder = Path(getattr(tok, "name_or_path", "") or "")
    f = folder / SPM_FILE
    return spm.SentencePieceProcessor(model_file=str(f)) if f.exists() else None
