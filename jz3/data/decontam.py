"""Benchmark decontamination by word n-gram overlap (default 10-gram; 13-gram is the other
common choice).

Every test question of every benchmark folder is indexed by the hashes of its word n-grams
(lower-cased alphanumeric words, so LaTeX and punctuation differences do not hide a copy).
A text is contaminated when it shares at least `min_matches` n-grams with one benchmark question;
questions shorter than n words are indexed whole and matched as a contiguous word sequence when
at least `min_short_words` long. Words are mapped to ids of the benchmark vocabulary and window
hashes come from one polynomial prefix sum (`jz3.data.ngram_hash`), so a block of texts costs a
few numpy calls.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from jz3.benchmarks import REGISTRY, BenchmarkFormatError, find_file, question_text, read_records
from jz3.data.dedup import words
from jz3.data.ngram_hash import Windows

# a folder that is not a registered benchmark: the first of these fields holds the question
FALLBACK_FIELDS = ("question", "problem", "input", "content")


@dataclass
class Match:
    benchmark: str
    idx: int  # 0-based position of the benchmark question in its test file
    shared_ngrams: int


def _fallback_question(row: dict, where: str) -> str:
    for f in FALLBACK_FIELDS:
        if isinstance(row.get(f), str):
            return row[f]
    raise BenchmarkFormatError(f"{where}: no question field (looked for {list(FALLBACK_FIELDS)})")


class _Table:
    """Sorted window hashes of one length with the (benchmark, idx) that first had each."""

    def __init__(self) -> None:
        self.parts: List[np.ndarray] = []
        self.owners: List[np.ndarray] = []
        self.keys = np.empty(0, dtype=np.uint64)
        self.who = np.empty((0, 2), dtype=np.int64)

    def add(self, hashes: np.ndarray, owner: Tuple[int, int]) -> None:
        self.parts.append(hashes)
        self.owners.append(np.tile(np.array(owner, dtype=np.int64), (len(hashes), 1)))

    def freeze(self) -> None:
        if not self.parts:
            return
        keys = np.concatenate([self.keys, *self.parts])
        who = np.concatenate([self.who, *self.owners])
        self.keys, first = np.unique(keys, return_index=True)
        self.who = who[first]
        self.parts, self.owners = [], []

    def lookup(self, q: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(owners of the found hashes, their positions in `q`)."""
        if len(q) == 0 or len(self.keys) == 0:
            return np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.int64)
        pos = np.searchsorted(self.keys, q).clip(max=len(self.keys) - 1)
        where = np.flatnonzero(self.keys[pos] == q)
        return self.who[pos[where]], where


class Decontaminator:
    def __init__(self, n: int = 10, min_matches: int = 1, min_short_words: int = 8) -> None:
        if n < 1 or min_matches < 1:
            raise ValueError(f"decontam n={n}, min_matches={min_matches}: both must be >= 1")
        self.n, self.min_matches, self.min_short_words = n, min_matches, min_short_words
        self.vocab: Dict[str, int] = {}  # 0 = a word no benchmark question has
        self.tables: Dict[int, _Table] = {}  # window length -> table
        self.benchmarks: List[str] = []
        self.sizes: Dict[str, int] = {}
        self._dirty = False

    def ids(self, w: Sequence[str], grow: bool = False) -> np.ndarray:
        if grow:
            for t in w:
                if t not in self.vocab:
                    self.vocab[t] = len(self.vocab) + 1
        get = self.vocab.get
        return np.array([get(t, 0) for t in w], dtype=np.uint64)

    def add(self, benchmark: str, idx: int, text: str) -> None:
        if benchmark not in self.sizes:
            self.benchmarks.append(benchmark)
            self.sizes[benchmark] = 0
        self.sizes[benchmark] += 1
        owner = (self.benchmarks.index(benchmark), idx)
        w = words(text)
        if len(w) >= self.n:
            length = self.n
        elif len(w) >= self.min_short_words:
            length = len(w)
        else:
            return
        hashes, _ = Windows([self.ids(w, True)]).hashes(length)
        self.tables.setdefault(length, _Table()).add(hashes, owner)
        self._dirty = True

    def add_folder(self, folder: str | Path) -> None:
        """A benchmark folder (`<name>/test.jsonl`, or the registered file of that benchmark),
        or a folder of such folders. Registered benchmarks are read through the registry
        (`jz3.benchmarks`: their question fields and file formats); other folders' `test.jsonl`
        through the first of FALLBACK_FIELDS. Folders are indexed in registry order (GSM8K before
        GSM-Hard, its copy with other numbers), so a shared n-gram names the original set."""
        root = Path(folder)
        order = {b.value: i for i, b in enumerate(REGISTRY)}  # originals before derived sets
        folders = [root] if self._test_file(root) else sorted(
            (p for p in root.iterdir() if p.is_dir() and self._test_file(p)),
            key=lambda p: (order.get(p.name, len(order)), p.name)) if root.is_dir() else []
        if not folders:
            raise FileNotFoundError(f"decontam_benchmarks: no benchmark test file under {root}")
        for d in folders:
            path = self._test_file(d)
            assert path is not None
            s = self._spec(d.name)
            for pos, (line_no, row) in enumerate(read_records(path)):
                where = f"{path}:{line_no}"
                if not isinstance(row, dict):
                    raise BenchmarkFormatError(f"{where}: record is not a JSON object")
                text = question_text(s, row, where) if s else _fallback_question(row, where)
                self.add(d.name, pos, text)

    @staticmethod
    def _spec(name: str):
        return next((s for b, s in REGISTRY.items() if b.value == name), None)

    def _test_file(self, d: Path) -> Optional[Path]:
        s = self._spec(d.name)
        if s is not None:
            return find_file(d.parent, s.name)
        return d / "test.jsonl" if (d / "test.jsonl").exists() else None

    @classmethod
    def from_folders(cls, folders: Sequence[str | Path], n: int = 10, min_matches: int = 1
                     ) -> Decontaminator:
        d = cls(n=n, min_matches=min_matches)
        for folder in folders:
            d.add_folder(folder)
        return d

    def freeze(self) -> None:
        """Sort the index now (done lazily by the first check otherwise)."""
        if self._dirty:
            for t in self.tables.values():
                t.freeze()
            self._dirty = False

    def check(self, text: str) -> Optional[Match]:
        """The benchmark question `text` overlaps most, when at or above the threshold."""
        return self.check_many([words(text)])[0]

    def check_many(self, word_lists: Sequence[List[str]]) -> List[Optional[Match]]:
        """`check` for a block of texts given as word lists (`jz3.data.dedup.words`)."""
        self.freeze()
        get = self.vocab.get
        flat = np.array([get(t, 0) for w in word_lists for t in w], dtype=np.uint64)
        win = Windows(flat=flat, lengths=[len(w) for w in word_lists])
        hits: List[Counter] = [Counter() for _ in word_lists]
        for length, table in self.tables.items():
            h, rec = win.hashes(length)
            found, where = table.lookup(h)
            if len(found):
                weight = 1 if length == self.n else self.min_matches  # whole short question
                for r, (b, i) in zip(rec[where].tolist(), found.tolist(), strict=True):
                    hits[r][(b, i)] += weight
        out: List[Optional[Match]] = []
        for c in hits:
            best = c.most_common(1)[0] if c else None
            if best is None or best[1] < self.min_matches:
                out.append(None)
            else:
                (bench, idx), count = best
                out.append(Match(self.benchmarks[bench], idx, count))
        return out
