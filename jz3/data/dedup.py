"""Exact (normalised-text hash) and near (MinHash LSH, datasketch) duplicate detection.

Both keep the first record seen and answer, for each later record, which kept record it
duplicates. Near duplicates are banded-LSH candidates (bands/rows chosen by datasketch) at the configured Jaccard threshold over word
shingles (the usual large-scale practice; candidates are not re-verified pairwise).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from typing import Dict, List, Optional, Sequence

import numpy as np
from datasketch.lsh import _optimal_param

from jz3.data.ngram_hash import Windows

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def normalize_text(text: str) -> str:
    """NFKC, lower case, punctuation and whitespace runs collapsed to one space."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).lower()))


def words(text: str) -> List[str]:
    return _WORD.findall(text.lower())


class ExactDeduper:
    """Remembers a 16-byte digest of each kept text's normal form."""

    def __init__(self) -> None:
        self._seen: Dict[bytes, str] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def check_add(self, key: str, text: str) -> Optional[str]:
        """None (and remember `key`) when new, else the key of the earlier identical text."""
        return self.check_add_normal(key, normalize_text(text))

    def check_add_normal(self, key: str, normal: str) -> Optional[str]:
        """`check_add` for a text already in normal form (e.g. `" ".join(words(text))`)."""
        digest = hashlib.blake2b(normal.encode(), digest_size=16).digest()
        first = self._seen.get(digest)
        if first is not None:
            return first
        self._seen[digest] = key
        return None


class _WordHashes(dict):
    """crc32 of each word, memoised (words repeat a lot; cleared when it grows too big)."""

    limit = 2_000_000

    def __missing__(self, word: str) -> int:
        if len(self) > self.limit:
            self.clear()
        value = self[word] = zlib.crc32(word.encode())
        return value


class NearDeduper:
    """MinHash over word `shingle`-grams, banded LSH at `threshold`.

    Signatures are computed for blocks of texts at once: crc32 per word, shingle hashes from
    `jz3.data.ngram_hash.Windows`, then `num_perm` affine hash functions modulo 2**32 and a per-text
    minimum (numpy, uint32), which is what datasketch's MinHash does one text at a time.
    The LSH uses datasketch's choice of (bands, rows) for the threshold, with one dict per band
    keyed by the band's bytes (datasketch's MinHashLSH byte-swaps and re-hashes every band).
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, shingle: int = 5,
                 seed: int = 1, block: int = 256) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"minhash_threshold={threshold} must be in (0, 1]")
        self.num_perm, self.shingle, self.block = num_perm, shingle, block
        rng = np.random.RandomState(seed)
        self.a = (rng.randint(0, 2**31, num_perm, dtype=np.uint64) * 2 + 1).astype(np.uint32)
        self.b = rng.randint(0, 2**32, num_perm, dtype=np.uint64).astype(np.uint32)
        self.bands, self.rows = _optimal_param(threshold, num_perm, 0.5, 0.5)
        self.tables: List[Dict[bytes, str]] = [{} for _ in range(self.bands)]
        self._words = _WordHashes()
        self.size = 0

    def signatures(self, word_lists: Sequence[List[str]]) -> np.ndarray:
        """MinHash signatures [len(word_lists), num_perm] (uint32; all-max for an empty text)."""
        out = np.full((len(word_lists), self.num_perm), 2**32 - 1, dtype=np.uint32)
        for start in range(0, len(word_lists), self.block):
            part = word_lists[start:start + self.block]
            wh = self._words
            flat = np.array([wh[t] for w in part for t in w], dtype=np.uint64)
            win = Windows(flat=flat, lengths=[len(w) for w in part])
            h, rec = win.hashes(self.shingle)
            short = [i for i, w in enumerate(part) if 0 < len(w) < self.shingle]
            if short:  # a text shorter than one shingle is its own single shingle
                h = np.concatenate([h, np.array([win.whole(i) for i in short], dtype=np.uint64)])
                rec = np.concatenate([rec, np.array(short, dtype=np.int64)])
                order = np.argsort(rec, kind="stable")
                h, rec = h[order], rec[order]
            if len(h) == 0:
                continue
            h = (h ^ (h >> np.uint64(31))) * np.uint64(0x9E3779B97F4A7C15)
            h = (h >> np.uint64(32)).astype(np.uint32)  # 32 well-mixed bits
            perm = np.multiply.outer(h, self.a)  # affine maps mod 2**32, in place (uint32)
            perm += self.b
            firsts = np.flatnonzero(np.r_[True, rec[1:] != rec[:-1]])
            out[start + rec[firsts]] = np.minimum.reduceat(perm, firsts, axis=0)
        return out

    def check_add_signature(self, key: str, sig: np.ndarray) -> Optional[str]:
        """None (and index `key`) when no kept text shares a band, else the first such key."""
        r = self.rows
        band_keys = [sig[i * r:(i + 1) * r].tobytes() for i in range(self.bands)]
        for table, bk in zip(self.tables, band_keys, strict=True):
            hit = table.get(bk)
            if hit is not None:
                return hit
        for table, bk in zip(self.tables, band_keys, strict=True):
            table[bk] = key
        self.size += 1
        return None

    def check_add(self, key: str, text: str) -> Optional[str]:
        return self.check_add_signature(key, self.signatures([words(text)])[0])


def jaccard(a: str, b: str, shingle: int = 5) -> float:
    """Exact word-shingle Jaccard similarity (for tests and reports)."""
    def grams(t: str) -> set:
        w = words(t)
        return {tuple(w[i:i + shingle]) for i in range(max(1, len(w) - shingle + 1))}

    ga, gb = grams(a), grams(b)
    return len(ga & gb) / max(1, len(ga | gb))


__all__ = ["ExactDeduper", "NearDeduper", "jaccard", "normalize_text", "words"]
