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

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from jz3.data.dedup import words
from jz3.data.ngram_hash import Windows

# which fields hold the question text in each benchmark's test.jsonl
QUESTION_FIELDS: Dict[str, Tuple[str, ...]] = {
    "gsm8k": ("question",),
    "math-oai": ("problem",),
    "math": ("problem",),
    "svamp": ("Body", "Question"),
    "asdiv": ("body", "question"),
    "mawps": ("input",),
    "carp_en": ("content",),
    "aqua": ("question",),
    "sat_math": ("question",),
    "mmlu_stem": ("question",),
    "tabmwp": ("question",),
}
FALLBACK_FIELDS = ("question", "problem", "input", "content")
@dataclass
class Match:
    benchmark: str
    idx: int  # 0-based line of the benchmark question in its test.jsonl
    shared_ngrams: int


def question_text(benchmark: str, row: dict, where: str) -> str:
    fields = QUESTION_FIELDS.get(benchmark)
    if fields is None:
        fields = tuple(f for f in FALLBACK_FIELDS if f in row)[:1]
    missing = [f for f in fields if not isinstance(row.get(f), str)]
    if not fields or missing:
        raise ValueError(f"{where}: no question field {missing or list(FALLBACK_FIELDS)} "
                         f"for benchmark {benchmark!r}")
    return " ".join(row[f] for f in fields)


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
        """A `<name>/test.jsonl` folder, or a folder of such benchmark folders."""
        root = Path(folder)
        files = [root / "test.jsonl"] if (root / "test.jsonl").exists() else sorted(
            root.glob("*/test.jsonl"))
        if not files:
            raise FileNotFoundError(f"decontam_benchmarks: no test.jsonl under {root}")
        for f in files:
            name = f.parent.name
            with open(f, encoding="utf-8") as fh:
                for line_no, line in enumerate(fh, 1):
                    if line.strip():
                        row = json.loads(line)
                        self.add(name, line_no - 1, question_text(name, row, f"{f}:{line_no}"))

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
