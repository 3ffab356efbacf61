"""Fixed-length training sequences read from packed token shards, and their collate function.

Three row layouts (`data.packing`, see docs/DATA.md); every row keeps its document boundaries
(`seq_lens`), so attention stays inside a document, and the first label of each segment is
ignored:
- `release`: whole documents, each cut to its first `seq_len` tokens + its EOS, packed greedily
  in order into rows of `seq_len + 1` tokens, the rest padded; no document crosses a row.
- `concat`: documents concatenated and cut every `seq_len` tokens (a tail spills to the next row).
- `none`: one document per row, right-truncated to `seq_len` and padded (the padded batches of
  LESS / the HF Trainer: one optimizer step = `global_batch` documents).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from jz3.config.enums import Packing
from jz3.data.packing import DOC_OFFSETS, LOSS_MASK, META, PACK_INDEX, TOKENS, read_pack_index
from jz3.data.records import PathLike

IGNORE_INDEX = -100

PackingLike = Union[Packing, str, bool]


def as_packing(packing: PackingLike) -> Packing:
    """`Packing` from an enum, its name, or a bool (True = concat, False = none)."""
    if isinstance(packing, bool):
        return Packing.concat if packing else Packing.none
    return Packing(packing)


def greedy_rows(lengths: np.ndarray, capacity: int) -> np.ndarray:
    """Row boundaries of an in-order greedy packing: row r holds documents
    `bounds[r]:bounds[r + 1]`; a document starts a new row when it does not fit the current one.
    Every length must be <= capacity."""
    bounds = [0]
    used = 0
    for i, n in enumerate(lengths.tolist()):
        if used + n > capacity:
            bounds.append(i)
            used = 0
        used += n
    if len(lengths):
        bounds.append(len(lengths))
    return np.asarray(bounds, np.int64)


class PackedDataset:
    """Rows of one packed source; `ds[i]` is a dict of numpy arrays of length `row_len`
    (`seq_len + 1` for release packing, else `seq_len`)."""

    def __init__(self, source_dir: PathLike, seq_len: int, packing: PackingLike = Packing.concat):
        self.dir = Path(source_dir)
        meta_file = self.dir / META
        if not meta_file.exists():
            raise FileNotFoundError(f"{meta_file}: no packed source here (run launch/pack.py)")
        self.meta: Dict[str, Any] = json.loads(meta_file.read_text(encoding="utf-8"))
        if seq_len < 2:
            raise ValueError(f"seq_len must be >= 2, got {seq_len}")
        self.seq_len = seq_len
        self.packing = as_packing(packing)
        self.row_len = seq_len + 1 if self.packing == Packing.release else seq_len
        self.pad_id = int(self.meta["pad_id"])
        eos = self.meta.get("eos_id")
        self.eos_id: Optional[int] = None if eos is None else int(eos)
        self.n_tokens = int(self.meta["n_tokens"])
        self.offsets = np.load(self.dir / DOC_OFFSETS)
        self._open()
        if len(self.tokens) != self.n_tokens or len(self.mask) != self.n_tokens \
                or int(self.offsets[-1]) != self.n_tokens:
            raise ValueError(f"{self.dir}: tokens/loss_mask/doc_offsets disagree with meta.json "
                             f"n_tokens={self.n_tokens}")
        self.rows = np.zeros(0, np.int64)
        if self.packing == Packing.release:
            kept = np.minimum(np.diff(self.offsets), self.row_len)
            self.rows = greedy_rows(kept, self.row_len)
            self.n_truncated = int((np.diff(self.offsets) > self.row_len).sum())

    def _open(self) -> None:
        if self.n_tokens:
            self.tokens = np.memmap(self.dir / TOKENS, dtype=np.dtype(self.meta["dtype"]), mode="r")
            self.mask = np.memmap(self.dir / LOSS_MASK, dtype=np.uint8, mode="r")
        else:
            self.tokens = np.zeros(0, np.dtype(self.meta["dtype"]))
            self.mask = np.zeros(0, np.uint8)

    def __getstate__(self) -> Dict[str, Any]:
        """Pickle without the memory maps (DataLoader workers reopen them, nothing is copied)."""
        state = dict(self.__dict__)
        state.pop("tokens", None)
        state.pop("mask", None)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open()

    def __len__(self) -> int:
        if self.packing == Packing.none:
            return len(self.offsets) - 1
        if self.packing == Packing.release:
            return max(len(self.rows) - 1, 0)
        return -(-self.n_tokens // self.seq_len)

    def _document(self, d: int) -> Tuple[np.ndarray, np.ndarray]:
        """Tokens and loss mask of document `d` as a release row holds it: its first `seq_len`
        tokens and its last token when that is the EOS (else its first `seq_len + 1`)."""
        start, end = int(self.offsets[d]), int(self.offsets[d + 1])
        if end - start <= self.row_len:
            return np.asarray(self.tokens[start:end]), np.asarray(self.mask[start:end])
        if self.eos_id is not None and int(self.tokens[end - 1]) == self.eos_id:
            idx = np.append(np.arange(start, start + self.seq_len), end - 1)
            return np.asarray(self.tokens[idx]), np.asarray(self.mask[idx])
        stop = start + self.row_len
        return np.asarray(self.tokens[start:stop]), np.asarray(self.mask[start:stop])

    def _span(self, i: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Real tokens, loss mask and segment starts of row `i` (before padding)."""
        L = self.seq_len
        if self.packing == Packing.release:
            parts = [self._document(d) for d in range(int(self.rows[i]), int(self.rows[i + 1]))]
            lens = np.fromiter((len(t) for t, _ in parts), np.int64, len(parts))
            starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
            return (np.concatenate([t for t, _ in parts]), np.concatenate([m for _, m in parts]),
                    starts)
        if self.packing == Packing.concat:
            start, end = i * L, min((i + 1) * L, self.n_tokens)
        else:  # one document, its head
            start = int(self.offsets[i])
            end = min(int(self.offsets[i + 1]), start + L)
        # segment starts inside this sequence: its first token, then every document start
        lo, hi = np.searchsorted(self.offsets, [start, end], side="right")
        starts = np.concatenate([[0], self.offsets[lo:hi] - start]).astype(np.int64)
        starts = starts[starts < end - start]
        return (np.asarray(self.tokens[start:end]), np.asarray(self.mask[start:end]), starts)

    def __getitem__(self, i: int) -> Dict[str, np.ndarray]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sequence {i} out of range for {n} sequences in {self.dir}")
        toks, tmask, starts = self._span(i % n)
        L, real = self.row_len, len(toks)
        ids = np.full(L, self.pad_id, np.int64)
        ids[:real] = toks
        mask = np.zeros(L, bool)
        mask[:real] = tmask != 0
        if real < L:  # the padding is a segment of its own
            starts = np.append(starts, real)
        seq_lens = np.diff(np.append(starts, L)).astype(np.int32)
        labels = np.where(mask, ids, IGNORE_INDEX)
        labels[starts] = IGNORE_INDEX
        position_ids = np.arange(L, dtype=np.int64) - np.repeat(starts, seq_lens)
        attention_mask = np.zeros(L, np.int64)
        attention_mask[:real] = 1
        return {"input_ids": ids, "labels": labels, "position_ids": position_ids,
                "seq_lens": seq_lens, "attention_mask": attention_mask}


class MixedPackedDataset:
    """All sources of a pack, one after another: global index = `offsets[s] + local index`."""

    def __init__(self, packed_dir: PathLike, seq_len: int, names: Optional[Sequence[str]] = None,
                 packing: PackingLike = Packing.concat):
        self.dir = Path(packed_dir)
        m = read_pack_index(self.dir)
        if names is None:
            if m is None or "sources" not in m:
                raise FileNotFoundError(f"{self.dir}/{PACK_INDEX} of a finished pack (with its "
                                        "'sources') is missing: pass the source names")
            names = m["sources"]
        self.names: List[str] = list(names)
        self.sources = [PackedDataset(self.dir / n, seq_len, packing) for n in self.names]
        self.row_len = seq_len + 1 if as_packing(packing) == Packing.release else seq_len
        self.lengths: List[int] = [len(s) for s in self.sources]
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)
        self.weights: Dict[str, float] = dict((m or {}).get("weights", {}))

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, i: int) -> tuple[int, int]:
        """(source index, local index) of global index `i`."""
        if not 0 <= i < len(self):
            raise IndexError(f"sequence {i} out of range for {len(self)} sequences in {self.dir}")
        s = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return s, int(i - self.offsets[s])

    def __getitem__(self, i: int) -> Dict[str, np.ndarray]:
        s, j = self.locate(int(i))
        return self.sources[s][j]


def collate(batch: Sequence[Dict[str, np.ndarray]]) -> Dict[str, Any]:
    """Stack sequences into `[B, L]` tensors plus `segment_ids`, `cu_seqlens`, `max_seqlen`."""
    import torch

    out: Dict[str, Any] = {
        k: torch.from_numpy(np.stack([b[k] for b in batch]))
        for k in ("input_ids", "labels", "position_ids", "attention_mask")
    }
    out["segment_ids"] = torch.from_numpy(np.stack(
        [np.repeat(np.arange(len(b["seq_lens"]), dtype=np.int32), b["seq_lens"]) for b in batch]))
    lens = np.concatenate([b["seq_lens"] for b in batch]).astype(np.int32)
    out["cu_seqlens"] = torch.from_numpy(np.concatenate([[0], np.cumsum(lens)]).astype(np.int32))
    out["max_seqlen"] = int(lens.max())
    return out


def block_causal_mask(segment_ids: Any) -> Any:
    """bool `[B, 1, L, L]`: True where query i may attend key j (same segment and j <= i)."""
    import torch

    L = segment_ids.shape[-1]
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    causal = torch.ones(L, L, dtype=torch.bool, device=segment_ids.device).tril()
    return (same & causal)[:, None]
