"""Exact (normalised-text hash) and near (MinHash LSH, datasketch) duplicate detection.

Both keep the first record seen and answer, for each later record, which kept record it
duplicates. Near duplicates are LSH candidates at the configured Jaccard threshold over word
shingles (the usual large-scale practice; candidates are not re-verified pairwise).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from typing import Dict, List, Optional

from datasketch import MinHash, MinHashLSH

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
        digest = hashlib.blake2b(normalize_text(text).encode(), digest_size=16).digest()
        first = self._seen.get(digest)
        if first is not None:
            return first
        self._seen[digest] = key
        return None


class NearDeduper:
    """MinHash over word `shingle`-grams, banded LSH at `threshold` (datasketch)."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, shingle: int = 5,
                 seed: int = 1) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"minhash_threshold={threshold} must be in (0, 1]")
        self.num_perm, self.shingle, self.seed = num_perm, shingle, seed
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        # crc32 of each shingle (C speed; the scheme's finaliser mixes it before permuting)
        template = MinHash(num_perm=num_perm, seed=seed, hashfunc=zlib.crc32)
        self._perms, self._scheme = template.permutations, template.scheme  # made once
        self.size = 0

    def shingles(self, text: str) -> List[bytes]:
        w = words(text)
        k = self.shingle
        if len(w) <= k:
            return [" ".join(w).encode()]
        return [" ".join(w[i:i + k]).encode() for i in range(len(w) - k + 1)]

    def minhash(self, text: str) -> MinHash:
        m = MinHash(num_perm=self.num_perm, seed=self.seed, hashfunc=zlib.crc32,
                    permutations=self._perms,
                    scheme=self._scheme)
        m.update_batch(self.shingles(text))
        return m

    def check_add(self, key: str, text: str) -> Optional[str]:
        """None (and index `key`) when no kept text is near, else one near kept key."""
        m = self.minhash(text)
        hits = self.lsh.query(m)
        if hits:
            return str(min(hits))  # deterministic choice among candidates
        self.lsh.insert(key, m, check_duplication=False)
        self.size += 1
        return None


def jaccard(a: str, b: str, shingle: int = 5) -> float:
    """Exact word-shingle Jaccard similarity (for tests and reports)."""
    def grams(t: str) -> set:
        w = words(t)
        return {tuple(w[i:i + shingle]) for i in range(max(1, len(w) - shingle + 1))}

    ga, gb = grams(a), grams(b)
    return len(ga & gb) / max(1, len(ga | gb))


__all__ = ["ExactDeduper", "NearDeduper", "jaccard", "normalize_text", "words"]
