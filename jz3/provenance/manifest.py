"""Stage manifests: what a stage was run with (its config section, its inputs' manifest hashes)
and what it wrote (its typed result). `manifest.json` is written last and atomically: a stage is
complete once it exists. See docs/ARCHITECTURE.md (Provenance)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import tempfile
import time
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Optional

MANIFEST = "manifest.json"


def jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def config_hash(*parts: Any) -> str:
    """A stable sha256 (hex, 16 chars) of dataclasses / dicts / lists / scalars."""
    blob = json.dumps([jsonable(p) for p in parts], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def versions() -> Dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("jz3", "torch", "transformers", "deepspeed"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def write_manifest(stage_dir: Path | str, stage: str, config_hash_: str,
                   inputs: Optional[Dict[str, str]] = None, counts: Optional[Dict[str, Any]] = None,
                   outputs: Optional[List[str]] = None, wall_s: Optional[float] = None,
                   extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Write `manifest.json` last, atomically: the stage is complete once it exists."""
    m = {
        "stage": stage,
        "config_hash": config_hash_,
        "inputs": dict(inputs or {}),  # input stage name -> its manifest hash
        "counts": counts or {},
        "outputs": list(outputs or []),
        "wall_s": wall_s,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": versions(),
    }
    if extra:
        m.update(extra)
    _atomic_write_text(Path(stage_dir) / MANIFEST, json.dumps(m, indent=2, ensure_ascii=False))
    return m


def read_manifest(stage_dir: Path | str) -> Optional[Dict[str, Any]]:
    p = Path(stage_dir) / MANIFEST
    if not p.exists():
        return None
    return json.loads(p.read_text(encoding="utf-8"))


def manifest_hash(m: Dict[str, Any]) -> str:
    """Identity of a finished stage output, for downstream stages' `inputs`."""
    return config_hash(m.get("config_hash"), m.get("inputs"), m.get("counts"), m.get("result"))
