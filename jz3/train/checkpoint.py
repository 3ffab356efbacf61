"""Checkpoint layout, RNG capture, `latest` pointer and pruning.

    <output_dir>/checkpoints/
        step-00000010/      engine state (DeepSpeed shards or engine_state.pt), trainer_state.json,
                            rng-rank00000.pt (one per rank)
        latest              "step-00000010", written last by rank 0: a checkpoint is complete
                            only once `latest` names it (a kill -9 mid-save leaves the old one)
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch

from jz3.data.records import atomic_write_text

log = logging.getLogger(__name__)

LATEST = "latest"
STATE_FILE = "trainer_state.json"


def ckpt_root(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def step_dir(output_dir: Path, step: int) -> Path:
    return ckpt_root(output_dir) / f"step-{step:08d}"


def latest_checkpoint(output_dir: Path) -> Optional[Path]:
    """The last complete checkpoint, or None."""
    pointer = ckpt_root(output_dir) / LATEST
    if not pointer.exists():
        return None
    path = ckpt_root(output_dir) / pointer.read_text().strip()
    if not (path / STATE_FILE).exists():
        raise FileNotFoundError(f"{pointer} names {path.name} but {path / STATE_FILE} is missing")
    return path


def rng_state() -> Dict[str, Any]:
    st: Dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                          "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state()
    return st


def set_rng_state(st: Dict[str, Any]) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state(st["cuda"])


def save_rank_files(path: Path, rank: int) -> None:
    torch.save(rng_state(), path / f"rng-rank{rank:05d}.pt")


def load_rank_files(path: Path, rank: int) -> None:
    f = path / f"rng-rank{rank:05d}.pt"
    if f.exists():
        set_rng_state(torch.load(f, weights_only=False))
    else:
        log.warning("%s missing (resuming on a different world size?): RNG not restored", f)


def write_trainer_state(path: Path, state: Dict[str, Any]) -> None:
    atomic_write_text(path / STATE_FILE, json.dumps(state, indent=1))


def read_trainer_state(path: Path) -> Dict[str, Any]:
    return json.loads((path / STATE_FILE).read_text())


def mark_latest(output_dir: Path, path: Path) -> None:
    atomic_write_text(ckpt_root(output_dir) / LATEST, path.name)


def discard_incomplete(output_dir: Path, path: Path) -> None:
    """Remove `path` after a failed save unless `latest` names it (rank 0 only)."""
    pointer = ckpt_root(output_dir) / LATEST
    if pointer.exists() and pointer.read_text().strip() == path.name:
        return
    shutil.rmtree(path, ignore_errors=True)
    log.warning("removed incomplete checkpoint %s after a failed save", path)


def prune(output_dir: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` complete checkpoints (rank 0 only)."""
    if keep_last <= 0:
        return
    latest = latest_checkpoint(output_dir)
    dirs = sorted(p for p in ckpt_root(output_dir).glob("step-*") if p.is_dir())
    if latest is not None:
        dirs = [d for d in dirs if d.name <= latest.name]
    for old in dirs[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
        log.info("pruned checkpoint %s", old)
