"""Vectorised hashes of every contiguous word window of many texts at once (numpy, uint64).

Texts become integer arrays (word ids or word hashes) concatenated into one flat array; one
polynomial prefix sum then gives the hash of any window in O(1), for any window length, so a
block of thousands of texts costs a handful of numpy calls instead of Python loops per n-gram.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

_P = 1099511628211  # odd, so invertible modulo 2**64
_INV_P = pow(_P, -1, 2**64)


class _Powers:
    def __init__(self) -> None:
        self.pw = np.ones(1, dtype=np.uint64)
        self.ipw = np.ones(1, dtype=np.uint64)

    def get(self, m: int) -> Tuple[np.ndarray, np.ndarray]:
        if len(self.pw) < m:
            size = max(m, 2 * len(self.pw), 4096)
            pw = np.empty(size, dtype=np.uint64)
            ipw = np.empty(size, dtype=np.uint64)
            a = b = 1
            for i in range(size):
                pw[i], ipw[i] = a, b
                a, b = a * _P % 2**64, b * _INV_P % 2**64
            self.pw, self.ipw = pw, ipw
        return self.pw[:m], self.ipw[:m]


_POWERS = _Powers()


class Windows:
    """Window hashes over a batch of integer sequences."""

    def __init__(self, seqs: Sequence[np.ndarray] = (), flat: np.ndarray | None = None,
                 lengths: Sequence[int] | None = None) -> None:
        """From a list of arrays, or from one `flat` array cut into `lengths`."""
        if flat is None:
            lengths = [len(s) for s in seqs]
            flat = np.concatenate(list(seqs)) if len(seqs) else np.empty(0, dtype=np.uint64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.offsets = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=self.offsets[1:])
        self.flat = np.asarray(flat).astype(np.uint64, copy=False)
        m = len(self.flat)
        pw, self.ipw = _POWERS.get(m + 1)
        self.prefix = np.zeros(m + 1, dtype=np.uint64)
        np.cumsum(self.flat * pw[:m], out=self.prefix[1:])
        self.owner = np.repeat(np.arange(len(self.lengths), dtype=np.int64), self.lengths)

    def hashes(self, length: int) -> Tuple[np.ndarray, np.ndarray]:
        """(hashes, sequence index) of every window of `length` lying inside one sequence."""
        m = len(self.flat)
        if m < length:
            return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
        starts = np.arange(m - length + 1)
        owner = self.owner[: m - length + 1]
        valid = starts + length <= self.offsets[1:][owner]
        h = (self.prefix[length:] - self.prefix[:-length]) * self.ipw[: m - length + 1]
        return h[valid], owner[valid]

    def whole(self, index: int) -> np.uint64:
        """Hash of the entire sequence `index` (equals its window hash at full length)."""
        a, b = self.offsets[index], self.offsets[index + 1]
        return (self.prefix[b] - self.prefix[a]) * self.ipw[a]
