"""Tokenize training records into memory-mapped token shards (ids, loss mask, document offsets).

`pack_sources(data_cfg, tokenizer, out_dir)` writes one folder per source (see docs/DATA.md):
`tokens.bin`, `loss_mask.bin`, `doc_offsets.npy`, `meta.json` (last), and `pack.json` (the index of
the whole pack: sources (mixture, then tail), weights, tail, counts, last). Records are read and validated in the main process (errors name file:line: field,
rejected records go to `<source>/rejected.jsonl`); token ids are computed by `num_workers` worker
processes, chunk by chunk, and written in record order, so the output does not depend on the
worker count. A source whose `meta.json` matches its config hash is not packed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Deque, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from jz3.config.data import DataConfig, DataSource
from jz3.config.enums import OnError
from jz3.config.validate import check
from jz3.data.records import (
    IOStats,
    PathLike,
    Quarantine,
    RecordError,
    RecordKind,
    atomic_write_text,
    count_lines,
    expand_paths,
    read_records,
    validate,
)

log = logging.getLogger(__name__)

PACK_VERSION = 2
TOKENS, LOSS_MASK, DOC_OFFSETS, META = "tokens.bin", "loss_mask.bin", "doc_offsets.npy", "meta.json"
CHUNK_RECORDS = 256

Pair = Tuple[str, str]  # (input, output); input == "" for a {"text"} record (loss on all)
Encoded = Tuple[np.ndarray, np.ndarray, np.ndarray]  # token ids, loss mask, document lengths


def to_train_example(record: Dict[str, Any]) -> Dict[str, str]:
    """Map a record to a train example: `{"text"}`, `{"input","output"}`, or kd/synth
    `{"prompt","completion"}` -> `{"input": prompt, "output": completion}`; ValueError if bad."""
    bad = validate(record, RecordKind.example)
    if bad is not None:
        fld, reason = bad
        raise ValueError(f"field '{fld}': {reason}" if fld else reason)
    if "text" in record:
        return {"text": record["text"]}
    if "completion" in record:
        return {"input": record["prompt"], "output": record["completion"]}
    return {"input": record["input"], "output": record["output"]}


def _pair(record: Dict[str, Any], as_text: bool = False) -> Pair:
    """(input, output) of a record already validated as `RecordKind.example`; `as_text`: the
    record as one text `input + output` (loss on all of it, `data.records_as_text`)."""
    if "text" in record:
        return "", record["text"]
    if "completion" in record:
        pair = record["prompt"], record["completion"]
    else:
        pair = record["input"], record["output"]
    return ("", pair[0] + pair[1]) if as_text else pair


# ----------------------------------------------------------------------------- encoding (workers)
@dataclass
class EncoderSpec:
    """What a worker needs: a sentencepiece model file (fast path) or an HF tokenizer."""

    spm_file: Optional[str]
    hf_tokenizer: Any
    bos_id: Optional[int]
    eos_id: Optional[int]


class DocEncoder:
    """Turns (input, output) pairs into flat token ids, a loss mask and document lengths.

    The first non-empty part is encoded as a prompt would be at inference; an output that follows
    an input is encoded without sentencepiece's dummy prefix, so `decode(ids) == input + output`.
    """

    def __init__(self, spec: EncoderSpec):
        self.spec = spec
        self._sp = self._sp_cont = None
        if spec.spm_file:
            import sentencepiece as spm
            from sentencepiece import sentencepiece_model_pb2 as pb

            self._sp = spm.SentencePieceProcessor(model_file=spec.spm_file)
            proto = pb.ModelProto()
            proto.ParseFromString(Path(spec.spm_file).read_bytes())
            proto.normalizer_spec.add_dummy_prefix = False
            self._sp_cont = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())

    def _encode(self, texts: List[str], continuation: bool) -> List[List[int]]:
        if self._sp is not None:
            sp = self._sp_cont if continuation else self._sp
            return sp.encode(texts, num_threads=1)
        tok = self.spec.hf_tokenizer
        return tok(texts, add_special_tokens=False)["input_ids"] if texts else []

    def encode(self, pairs: Sequence[Pair]) -> Encoded:
        """ids (int64), loss mask (uint8), document lengths (int64), documents in order."""
        first = [a if a else b for a, b in pairs]
        is_text = np.array([not a for a, _ in pairs], dtype=bool)
        idx2 = [i for i, (a, _) in enumerate(pairs) if a]
        ids1 = self._encode(first, continuation=False)
        ids2: List[List[int]] = [[] for _ in pairs]
        outs = self._encode([pairs[i][1] for i in idx2], continuation=True)
        for i, ids in zip(idx2, outs, strict=True):
            ids2[i] = ids
        bos, eos = self.spec.bos_id, self.spec.eos_id
        nb, ne = int(bos is not None), int(eos is not None)
        l1 = np.fromiter(map(len, ids1), np.int64, len(pairs))
        l2 = np.fromiter(map(len, ids2), np.int64, len(pairs))
        doc_lens = nb + l1 + l2 + ne
        head, tail = [bos] if nb else [], [eos] if ne else []
        docs = (chain(head, a, b, tail) for a, b in zip(ids1, ids2, strict=True))
        flat = np.fromiter(chain.from_iterable(docs), np.int64, int(doc_lens.sum()))
        # per document: bos (0) | part 1 (1 for text, else 0) | part 2 (1) | eos (1)
        seg_lens = np.stack([np.full(len(pairs), nb), l1, l2, np.full(len(pairs), ne)], 1).ravel()
        seg_vals = np.stack([np.zeros(len(pairs)), is_text, np.ones(len(pairs)),
                             np.ones(len(pairs))], 1).ravel().astype(np.uint8)
        mask = np.repeat(seg_vals, seg_lens)
        return flat, mask, doc_lens


_WORKER: Optional[DocEncoder] = None


def _init_worker(spec: EncoderSpec) -> None:
    global _WORKER
    _WORKER = DocEncoder(spec)


def _encode_in_worker(pairs: List[Pair]) -> Encoded:
    assert _WORKER is not None
    return _WORKER.encode(pairs)


def encoder_spec(tokenizer: Any) -> EncoderSpec:
    """Fast path when the tokenizer folder has a `tokenizer.model` with the same special ids."""
    from jz3.data.tokenizers import spm_processor

    sp = spm_processor(tokenizer)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if sp is not None and sp.bos_id() == bos and sp.eos_id() == eos:
        spm_file = str(Path(tokenizer.name_or_path) / "tokenizer.model")
        return EncoderSpec(spm_file=spm_file, hf_tokenizer=None, bos_id=bos, eos_id=eos)
    return EncoderSpec(spm_file=None, hf_tokenizer=tokenizer, bos_id=bos, eos_id=eos)


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Identity of a tokenizer's vocabulary (and sentencepiece model bytes, when there is one)."""
    h = hashlib.sha256()
    f = Path(getattr(tokenizer, "name_or_path", "") or "") / "tokenizer.model"
    if f.is_file():
        h.update(f.read_bytes())
    h.update(json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False).encode())
    return h.hexdigest()[:16]


class _Encoders:
    """Runs `DocEncoder.encode` in-process (1 worker) or in a process pool, results in order."""

    def __init__(self, spec: EncoderSpec, num_workers: int):
        self.num_workers = max(1, num_workers)
        self._local = DocEncoder(spec) if self.num_workers == 1 else None
        self._pool: Optional[ProcessPoolExecutor] = None
        if self._local is None:
            # fork, like torch's DataLoader workers: no re-import of the caller's __main__
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            self._pool = ProcessPoolExecutor(self.num_workers, mp_context=ctx,
                                             initializer=_init_worker, initargs=(spec,))

    def map(self, chunks: Iterator[List[Pair]]) -> Iterator[Encoded]:
        if self._local is not None:
            for c in chunks:
                yield self._local.encode(c)
            return
        assert self._pool is not None
        pending: Deque[Future] = deque()
        for c in chunks:
            pending.append(self._pool.submit(_encode_in_worker, c))
            if len(pending) >= 2 * self.num_workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def __enter__(self) -> _Encoders:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ----------------------------------------------------------------------------- writing
PACK_INDEX = "pack.json"


def config_hash(*parts: Any) -> str:
    """A stable hash of JSON-able parts (what a pack depends on; a resume check, not provenance)."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_pack_index(out_dir: PathLike) -> Optional[Dict[str, Any]]:
    """`pack.json` of a finished pack (None when absent)."""
    p = Path(out_dir) / PACK_INDEX
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def _files_signature(path: str) -> List[Tuple[str, int, int]]:
    return [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in expand_paths(path)]


def source_hash(source: DataSource, tok_fp: str, cfg: DataConfig) -> str:
    """What a source's pack depends on: its files (size, mtime), tokenizer, special tokens."""
    return config_hash(PACK_VERSION, source.name, _files_signature(source.path), tok_fp,
                       cfg.add_bos, cfg.add_eos, OnError(cfg.on_error).value,
                       cfg.records_as_text)


def _chunks(records: Iterator[Dict[str, Any]], size: int,
            as_text: bool = False) -> Iterator[List[Pair]]:
    buf: List[Pair] = []
    for r in records:
        buf.append(_pair(r, as_text))
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


def pack_source(source: DataSource, encoders: _Encoders, src_dir: Path, on_error: OnError,
                dtype: np.dtype, pad_id: int, vocab_size: int, src_hash: str,
                eos_id: Optional[int] = None, as_text: bool = False) -> Dict[str, Any]:
    """Tokenize one source into `src_dir`; returns its meta (also written to `meta.json`, last).
    A source without a usable record is an error naming its files; on any error the temp
    files are removed."""
    t0 = time.time()
    src_dir.mkdir(parents=True, exist_ok=True)
    for name in (META, "rejected.jsonl"):
        (src_dir / name).unlink(missing_ok=True)
    files = expand_paths(source.path)
    if not files:
        raise RecordError(source.path, 0, f"data source {source.name!r}: no record files "
                          "(empty input)")
    total = sum(count_lines(f) for f in files if f.suffix == ".jsonl") or None
    stats = IOStats()
    tmp_tok, tmp_mask = src_dir / f".{TOKENS}.tmp", src_dir / f".{LOSS_MASK}.tmp"
    tmp_off = src_dir / f".{DOC_OFFSETS}.tmp.npy"
    try:
        return _pack_files(source, files, encoders, src_dir, on_error, dtype, pad_id,
                           vocab_size, src_hash, stats, total, t0, eos_id, as_text)
    except BaseException:
        for tmp in (tmp_tok, tmp_mask, tmp_off):  # no temp file outlives a failed run
            tmp.unlink(missing_ok=True)
        raise


def _pack_files(source: DataSource, files: List[Path], encoders: _Encoders, src_dir: Path,
                on_error: OnError, dtype: np.dtype, pad_id: int, vocab_size: int,
                src_hash: str, stats: IOStats, total: Optional[int], t0: float,
                eos_id: Optional[int] = None, as_text: bool = False) -> Dict[str, Any]:
    from tqdm import tqdm

    tmp_tok, tmp_mask = src_dir / f".{TOKENS}.tmp", src_dir / f".{LOSS_MASK}.tmp"
    tmp_off = src_dir / f".{DOC_OFFSETS}.tmp.npy"
    doc_lens: List[np.ndarray] = []
    n_tokens = n_target = 0
    with Quarantine(src_dir / "rejected.jsonl") as quarantine, \
            open(tmp_tok, "wb") as ftok, open(tmp_mask, "wb") as fmask, \
            tqdm(total=total, unit="rec", desc=f"pack {source.name}", mininterval=2.0) as bar:
        records = read_records(files, kind=RecordKind.example, on_error=on_error,
                               quarantine=quarantine, stats=stats)
        for ids, mask, lens in encoders.map(_chunks(records, CHUNK_RECORDS, as_text)):
            if ids.size and int(ids.max()) > np.iinfo(dtype).max:
                raise ValueError(f"{source.name}: token id {int(ids.max())} does not fit {dtype}")
            ids.astype(dtype).tofile(ftok)
            mask.tofile(fmask)
            doc_lens.append(lens)
            n_tokens += int(ids.size)
            n_target += int(mask.sum())
            bar.update(len(lens))
    if not doc_lens:
        where = ", ".join(str(f) for f in files)
        why = (f"no usable record ({stats.rejected} rejected, see {src_dir / 'rejected.jsonl'})"
               if stats.read else "no records (empty input)")
        raise RecordError(where, 0, f"data source {source.name!r}: {why}")
    lens_all = np.concatenate(doc_lens)
    offsets = np.concatenate([[0], np.cumsum(lens_all)]).astype(np.int64)
    assert offsets[-1] == n_tokens
    np.save(tmp_off, offsets)
    os.replace(tmp_tok, src_dir / TOKENS)
    os.replace(tmp_mask, src_dir / LOSS_MASK)
    os.replace(tmp_off, src_dir / DOC_OFFSETS)
    meta = {
        "source": source.name, "path": source.path, "files": [str(f) for f in files],
        "config_hash": src_hash, "dtype": dtype.name, "vocab_size": vocab_size, "pad_id": pad_id,
        "eos_id": eos_id, "n_docs": int(lens_all.size), "n_tokens": n_tokens, "n_target_tokens": n_target,
        "records": stats.as_dict(), "wall_s": round(time.time() - t0, 3),
    }
    atomic_write_text(src_dir / META, json.dumps(meta, indent=2, ensure_ascii=False))
    log.info("packed %s: %d records -> %d docs, %d tokens (%d targets), %d rejected, %.1fs",
             source.name, stats.read, meta["n_docs"], n_tokens, n_target, stats.rejected,
             meta["wall_s"])
    return meta


def read_meta(src_dir: PathLike) -> Optional[Dict[str, Any]]:
    p = Path(src_dir) / META
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None


def all_sources(data_cfg: DataConfig) -> List[DataSource]:
    """The mixture sources, then the tail sources (read after the mixture, `data.tail_sources`)."""
    return list(data_cfg.sources) + list(data_cfg.tail_sources)


def pack_sources(data_cfg: DataConfig, tokenizer: Any, out_dir: PathLike) -> Path:
    """Pack every source of `data_cfg.sources` and `data_cfg.tail_sources` under
    `out_dir/<name>/`; skip what is up to date."""
    out = Path(out_dir)
    check(data_cfg, "data")
    if not data_cfg.sources:
        raise ValueError("data.sources: no source to pack")
    sources = all_sources(data_cfg)
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"data.sources + data.tail_sources: source names must be unique, got "
                         f"{names}")
    for key, group in (("sources", data_cfg.sources), ("tail_sources", data_cfg.tail_sources)):
        for i, s in enumerate(group):
            if not str(s.path or "").strip():
                raise ValueError(f"data.{key}[{i}] ({s.name!r}): path is empty; name a JSONL "
                                 "file, folder or glob of training records")
    t0 = time.time()
    tok_fp = tokenizer_fingerprint(tokenizer)
    hashes = {s.name: source_hash(s, tok_fp, data_cfg) for s in sources}
    stage_hash = config_hash(hashes)
    m = read_pack_index(out)
    if m is not None and m.get("config_hash") == stage_hash and all(
            (read_meta(out / n) or {}).get("config_hash") == hashes[n] for n in names):
        log.info("pack: %s is up to date (%s %s)", out, PACK_INDEX, stage_hash)
        return out
    vocab_size = len(tokenizer)
    dtype = token_dtype(vocab_size)
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id
    metas: Dict[str, Dict[str, Any]] = {}
    todo = [s for s in sources
            if (read_meta(out / s.name) or {}).get("config_hash") != hashes[s.name]]
    for s in sources:
        if s not in todo:
            metas[s.name] = read_meta(out / s.name) or {}
            log.info("pack: source %s is up to date, skipped", s.name)
    if todo:
        spec = encoder_spec(tokenizer)
        with _Encoders(spec, data_cfg.num_workers) as enc:
            for s in todo:
                metas[s.name] = pack_source(s, enc, out / s.name, data_cfg.on_error, dtype,
                                            int(pad_id), vocab_size, hashes[s.name],
                                            eos_id=spec.eos_id, as_text=data_cfg.records_as_text)
    counts = {n: {k: metas[n][k] for k in ("n_docs", "n_tokens", "n_target_tokens", "records")}
              for n in names}
    index = {"config_hash": stage_hash, "sources": names, "counts": counts,
             "weights": {s.name: s.weight for s in data_cfg.sources},
             "tail": [s.name for s in data_cfg.tail_sources], "tokenizer": tok_fp,
             "outputs": [f"{n}/{f}" for n in names for f in (TOKENS, LOSS_MASK, DOC_OFFSETS)],
             "wall_s": round(time.time() - t0, 3)}
    atomic_write_text(out / PACK_INDEX, json.dumps(index, indent=2, ensure_ascii=False))
    return out
