"""Deterministic, resumable mixture sampler over several sources of packed sequences.

The sampler defines one global stream of positions `k = 0, 1, 2, ...`; `index(k)` is a pure
function of `k`, the source lengths, the weights and the seed:

1. Positions are grouped in blocks of `block_size`. Each block gets per-source counts that keep
   every source's cumulative count within one sample of `weight * positions` (largest-remainder
   apportionment of the running deficit), laid out in a seeded random order inside the block.
2. The `j`-th pick of source `s` is element `j % n_s` of a seeded permutation of that source's
   sequences, drawn anew for each epoch `j // n_s`.

   With `natural=True` (the sources by their sizes, `data.natural_mix`) a pass of
   `sum(lengths)` positions is instead one seeded permutation of every sequence of every
   source: each read exactly once per pass, as the release's concatenated, shuffled CoT + tool
   corpus (`prepare_train_data.py`).
3. Tail sources (`tail_lengths`: the release's SFT data at the end of the pretraining run) are
   never mixed in: one pass of the stream is `sum(lengths)` mixture positions followed by every
   tail sequence once, in a seeded permutation of the whole tail (or in order without
   `tail_shuffle`); pass `p` uses the mixture's positions `p * sum(lengths) ...` and a fresh
   tail permutation.

Data-parallel rank `r` of `world_size` takes positions `k = r, r + W, r + 2W, ...`. The state is
the number of global positions consumed (plus a fingerprint to refuse a mismatched resume), so
resuming after N samples gives exactly the samples an uninterrupted run gives.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

try:  # a torch Sampler when torch is there (DataLoader accepts any iterable of indices anyway)
    from torch.utils.data import Sampler as _Base
except ImportError:  # pragma: no cover
    _Base = object  # type: ignore[assignment,misc]


class MixtureSampler(_Base):  # type: ignore[misc,valid-type]
    """Global indices into a `MixedPackedDataset` (source `s` owns `[offsets[s], offsets[s+1])`;
    the tail sources come after the mixture sources)."""

    def __init__(self, lengths: Sequence[int], weights: Sequence[float], seed: int = 0,
                 rank: int = 0, world_size: int = 1, block_size: int = 1024,
                 num_samples: Optional[int] = None, consumed: int = 0,
                 tail_lengths: Sequence[int] = (), tail_shuffle: bool = True,
                 natural: bool = False):
        if len(lengths) != len(weights) or not lengths:
            raise ValueError(f"lengths {list(lengths)} and weights {list(weights)} must have the "
                             "same, non-zero length")
        w = np.asarray(weights, dtype=np.float64)
        if (w < 0).any() or not w.sum() > 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {list(weights)}")
        self.lengths = [int(n) for n in lengths]
        for n, wi in zip(self.lengths, w, strict=True):
            if wi > 0 and n <= 0:
                raise ValueError(f"a source with weight {wi} has no sequences (lengths {lengths})")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} out of range for world_size {world_size}")
        self.weights = w / w.sum()
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.block_size = int(block_size)
        self.num_samples = num_samples
        self.tail_lengths = [int(n) for n in tail_lengths]
        if any(n < 0 for n in self.tail_lengths):
            raise ValueError(f"tail_lengths must be >= 0, got {list(tail_lengths)}")
        self.tail_shuffle = bool(tail_shuffle)
        self.natural = bool(natural)
        if self.natural:  # by size: the weights are the lengths
            w = np.asarray(self.lengths, dtype=np.float64)
            if not w.sum() > 0:
                raise ValueError(f"natural mix over sources without sequences: {lengths}")
            self.weights = w / w.sum()
        self.mix_pass = int(sum(self.lengths))  # mixture positions per pass
        self.tail_total = int(sum(self.tail_lengths))
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths + self.tail_lengths)]
                                      ).astype(np.int64)
        self.consumed = int(consumed)
        self._block_starts: List[np.ndarray] = [np.zeros(len(self.lengths), np.int64)]
        self._block = lru_cache(maxsize=4)(self._make_block)
        self._perm = lru_cache(maxsize=16)(self._make_perm)
        self._perm_tail = lru_cache(maxsize=2)(self._tail_perm)
        self._perm_natural = lru_cache(maxsize=2)(self._natural_perm)

    # ------------------------------------------------------------------ the global stream
    def fingerprint(self) -> str:
        parts: list = [self.lengths, [round(float(x), 12) for x in self.weights],
                       self.block_size]
        if self.tail_total:
            parts += [self.tail_lengths, self.tail_shuffle]
        if self.natural:
            parts += ["natural"]
        blob = json.dumps(parts)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _counts_at_block(self, b: int) -> np.ndarray:
        """Per-source picks made before block `b` (computed block by block, then cached)."""
        while len(self._block_starts) <= b:
            nb = len(self._block_starts) - 1
            done = self._block_starts[-1]
            deficit = self.weights * (nb + 1) * self.block_size - done
            self._block_starts.append(done + _apportion(deficit, self.block_size))
        return self._block_starts[b]

    def _make_block(self, b: int) -> tuple:
        """(source of each position of block b, rank of that pick among the source's picks)."""
        counts = self._counts_at_block(b + 1) - self._counts_at_block(b)
        src = np.repeat(np.arange(len(self.lengths)), counts)
        np.random.default_rng([self.seed, 1, b]).shuffle(src)
        pick = np.empty_like(src)
        for s in np.nonzero(counts)[0]:
            where = src == s
            pick[where] = self._counts_at_block(b)[s] + np.arange(counts[s])
        return src, pick

    def _make_perm(self, s: int, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, 2, s, epoch]).permutation(self.lengths[s])

    def _natural_perm(self, p: int) -> np.ndarray:
        return np.random.default_rng([self.seed, 4, p]).permutation(self.mix_pass)

    def _tail_perm(self, p: int) -> np.ndarray:
        if not self.tail_shuffle:
            return np.arange(self.tail_total)
        return np.random.default_rng([self.seed, 3, p]).permutation(self.tail_total)

    def _mixture_position(self, k: int) -> Optional[int]:
        """The mixture stream position of stream position `k` (None: a tail position)."""
        if not self.tail_total:
            return int(k)
        p, r = divmod(int(k), self.mix_pass + self.tail_total)
        return p * self.mix_pass + r if r < self.mix_pass else None

    def in_tail(self, k: int) -> bool:
        return self._mixture_position(k) is None

    def index(self, k: int) -> int:
        """Global dataset index at stream position `k`."""
        m = self._mixture_position(k)
        if m is None:
            p, r = divmod(int(k), self.mix_pass + self.tail_total)
            return int(self.offsets[len(self.lengths)] + self._perm_tail(p)[r - self.mix_pass])
        if self.natural:
            p, r = divmod(m, self.mix_pass)
            return int(self._perm_natural(p)[r])
        b, j = divmod(m, self.block_size)
        src, pick = self._block(b)
        s, p = int(src[j]), int(pick[j])
        epoch, pos = divmod(p, self.lengths[s])
        return int(self.offsets[s] + self._perm(s, epoch)[pos])

    def source_of(self, k: int) -> int:
        """Source number at stream position `k` (tail sources follow the mixture sources)."""
        m = self._mixture_position(k)
        if m is None or self.natural:
            i = self.index(k)
            return int(np.searchsorted(self.offsets, i, side="right") - 1)
        b, j = divmod(m, self.block_size)
        return int(self._block(b)[0][j])

    # ------------------------------------------------------------------ this rank's iterator
    def __iter__(self) -> Iterator[int]:
        k = self.consumed + self.rank
        while self.num_samples is None or k < self.num_samples:
            idx = self.index(k)
            self.consumed = k - self.rank + self.world_size
            yield idx
            k += self.world_size

    def __len__(self) -> int:
        if self.num_samples is None:
            return 1 << 62
        return max(0, -(-(self.num_samples - self.consumed - self.rank) // self.world_size))

    def state_dict(self, consumed: Optional[int] = None) -> Dict[str, object]:
        """`consumed` = global positions consumed by all ranks (pass the trainer's own count when
        a DataLoader prefetches); default: what this iterator has yielded."""
        return {"consumed": int(self.consumed if consumed is None else consumed),
                "seed": self.seed, "world_size": self.world_size,
                "fingerprint": self.fingerprint()}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        if state.get("fingerprint") != self.fingerprint():
            raise ValueError("sampler state is for other data (source lengths, weights or "
                             f"block size differ): {state}")
        if int(state["seed"]) != self.seed:  # type: ignore[arg-type]
            raise ValueError(f"sampler state has seed {state['seed']}, this sampler {self.seed}")
        self.consumed = int(state["consumed"])  # type: ignore[arg-type]


def _apportion(deficit: np.ndarray, total: int) -> np.ndarray:
    """Non-negative integers summing to `total`, close to `deficit` (largest remainder)."""
    d = np.maximum(deficit, 0.0)
    d = d * (total / d.sum()) if d.sum() > 0 else np.full_like(d, total / len(d))
    n = np.floor(d).astype(np.int64)
    rest = total - int(n.sum())
    if rest > 0:
        order = np.argsort(-(d - n), kind="stable")
        n[order[:rest]] += 1
    return n
