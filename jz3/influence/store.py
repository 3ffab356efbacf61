"""Memory-mapped float16 feature shards with ids; resumable writing; merge with missing-shard report.

Layout of one split (`candidates` or `targets`):
    <split>/part-00000-of-00004/ids.json          ids (and subtasks) of the shard, in order
    <split>/part-00000-of-00004/<ckpt>.npy        float16 [n, D], unit-norm rows (np.memmap)
    <split>/part-00000-of-00004/<ckpt>.norm.npy   float32 [n], the row norms before normalising
    <split>/part-00000-of-00004/progress.json     rows written per checkpoint (resume point)
    <split>/part-00000-of-00004/done.json         written last: the shard is complete
Rows are stored normalised (cosine is all LESS needs) so float16 cannot overflow at 7B scale.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

from jz3.data.records import atomic_write_text, shard_name

log = logging.getLogger(__name__)
SHARD_RE = re.compile(r"^part-(\d{5})-of-(\d{5})$")


class MissingShardsError(RuntimeError):
    def __init__(self, split_dir: Path, missing: List[int], num_shards: int):
        self.missing, self.num_shards = missing, num_shards
        super().__init__(f"{split_dir}: {len(missing)} of {num_shards} feature shards missing or "
                         f"incomplete: {missing[:20]}{' ...' if len(missing) > 20 else ''}; "
                         f"rerun those array tasks (influence.shard=<i>)")


def shard_dir(split_dir: Path | str, shard: int, num_shards: int) -> Path:
    return Path(split_dir) / shard_name(shard, num_shards, suffix="")


class ShardWriter:
    """Writes one shard's features checkpoint by checkpoint; reopening resumes where it stopped."""

    def __init__(self, path: Path | str, ids: Sequence[str], subtasks: Sequence[str], dim: int,
                 ckpts: Sequence[str]):
        self.path, self.dim, self.ckpts = Path(path), dim, list(ckpts)
        self.ids, self.n = list(ids), len(ids)
        self.path.mkdir(parents=True, exist_ok=True)
        meta = {"ids": self.ids, "subtasks": list(subtasks), "dim": dim, "ckpts": self.ckpts}
        ids_file = self.path / "ids.json"
        if ids_file.exists():
            old = json.loads(ids_file.read_text())
            if old != meta:
                raise ValueError(f"{ids_file}: shard exists with other ids/dim/checkpoints; "
                                 "delete the shard folder to recompute it")
        else:
            atomic_write_text(ids_file, json.dumps(meta))
        prog = self.path / "progress.json"
        self.progress: Dict[str, int] = json.loads(prog.read_text()) if prog.exists() else {}
        self._maps: Dict[str, np.memmap] = {}
        self._norms: Dict[str, np.memmap] = {}

    @property
    def done(self) -> bool:
        return (self.path / "done.json").exists()

    def rows_done(self, ckpt: str) -> int:
        return int(self.progress.get(ckpt, 0))

    def _open(self, ckpt: str) -> None:
        if ckpt in self._maps:
            return
        f, fn = self.path / f"{ckpt}.npy", self.path / f"{ckpt}.norm.npy"
        resume = f.exists() and fn.exists() and self.rows_done(ckpt) > 0
        mode = "r+" if resume else "w+"
        self._maps[ckpt] = np.lib.format.open_memmap(f, mode=mode, dtype=np.float16,
                                                     shape=None if resume else (self.n, self.dim))
        self._norms[ckpt] = np.lib.format.open_memmap(fn, mode=mode, dtype=np.float32,
                                                      shape=None if resume else (self.n,))

    def write(self, ckpt: str, start: int, feats: torch.Tensor) -> None:
        """Rows `start:start+len(feats)` of checkpoint `ckpt`; must continue the previous rows."""
        if start != self.rows_done(ckpt):
            raise ValueError(f"{self.path}/{ckpt}: write at row {start}, expected {self.rows_done(ckpt)}")
        self._open(ckpt)
        f = feats.detach().float().cpu()
        norms = f.norm(dim=1)
        unit = f / norms.clamp_min(1e-30)[:, None]
        end = start + f.shape[0]
        self._maps[ckpt][start:end] = unit.numpy().astype(np.float16)
        self._norms[ckpt][start:end] = norms.numpy()
        self._maps[ckpt].flush()
        self._norms[ckpt].flush()
        self.progress[ckpt] = end
        atomic_write_text(self.path / "progress.json", json.dumps(self.progress))

    def finish(self) -> None:
        for c in self.ckpts:
            if self.rows_done(c) != self.n:
                raise RuntimeError(f"{self.path}: checkpoint {c} has {self.rows_done(c)}/{self.n} rows")
        self._maps.clear()
        self._norms.clear()
        atomic_write_text(self.path / "done.json", json.dumps({"rows": self.n, "ckpts": self.ckpts}))


@dataclass
class Shard:
    path: Path
    ids: List[str]
    subtasks: List[str]
    dim: int
    ckpts: List[str]

    def features(self, ckpt: str) -> np.ndarray:
        """Read-only memmap float16 [n, D] of unit rows."""
        return np.load(self.path / f"{ckpt}.npy", mmap_mode="r")

    def norms(self, ckpt: str) -> np.ndarray:
        return np.load(self.path / f"{ckpt}.norm.npy", mmap_mode="r")


def open_shard(path: Path | str) -> Shard:
    p = Path(path)
    if not (p / "done.json").exists():
        raise FileNotFoundError(f"{p}: shard is incomplete (no done.json)")
    meta = json.loads((p / "ids.json").read_text())
    return Shard(p, meta["ids"], meta["subtasks"], meta["dim"], meta["ckpts"])


@dataclass
class FeatureSet:
    """All shards of a split, in shard order (features stay memory-mapped)."""

    shards: List[Shard]

    @property
    def ids(self) -> List[str]:
        return [i for s in self.shards for i in s.ids]

    @property
    def subtasks(self) -> List[str]:
        return [t for s in self.shards for t in s.subtasks]

    @property
    def ckpts(self) -> List[str]:
        return self.shards[0].ckpts if self.shards else []

    def blocks(self, ckpt: str) -> Iterator[np.ndarray]:
        for s in self.shards:
            yield s.features(ckpt)

    def matrix(self, ckpt: str) -> np.ndarray:
        return np.concatenate([np.asarray(b) for b in self.blocks(ckpt)], axis=0)


def merge_shards(split_dir: Path | str, num_shards: Optional[int] = None) -> FeatureSet:
    """Open every shard of a split; raise MissingShardsError listing absent/incomplete ones."""
    d = Path(split_dir)
    found = {}
    for p in sorted(d.glob("part-*-of-*")) if d.exists() else []:
        m = SHARD_RE.match(p.name)
        if m:
            found.setdefault(int(m.group(2)), {})[int(m.group(1))] = p
    if num_shards is None:
        if len(found) != 1:
            raise ValueError(f"{d}: cannot infer num_shards from {sorted(found)}; pass it")
        num_shards = next(iter(found))
    have = found.get(num_shards, {})
    missing = [i for i in range(num_shards)
               if i not in have or not (have[i] / "done.json").exists()]
    if missing:
        raise MissingShardsError(d, missing, num_shards)
    shards = [open_shard(have[i]) for i in range(num_shards)]
    dims = {s.dim for s in shards}
    if len(dims) != 1:
        raise ValueError(f"{d}: shards disagree on the feature dim: {sorted(dims)}")
    log.info("merged %d shards of %s: %d rows", num_shards, d, sum(len(s.ids) for s in shards))
    return FeatureSet(shards)
