"""Stage manifests: what a stage was run with (its config section, its inputs' manifest hashes)
and what it wrote (its typed result). `manifest.json` is written last and atomically: a stage is
complete once it exists. See docs/ARCHITECTURE.md (Provenance).

A manifest lives in `<run_dir>/<stage>/` and names files of its run folder relative to
`<run_dir>` (listed in `relative_paths`), so a copied or moved run folder reads its own files:
`read_manifest` gives them back as absolute paths under the folder it is read from, and
`manifest_hash` hashes the relative form (the same wherever the folder lies)."""

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
from typing import Any, Dict, List, Optional, Union, get_args, get_origin, get_type_hints

MANIFEST = "manifest.json"
# The layout of manifest.json; a reader refuses another one (bump it when the layout changes).
SCHEMA = 2


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


def from_jsonable(t: Any, raw: Any, where: str) -> Any:
    """`raw` (as `jsonable` wrote it) back as type `t`: dataclasses field by field (an unknown
    or a missing required field is an error naming `where`), `Path`, enums, lists, dicts and
    Optionals of them; other values as they are."""
    origin, args = get_origin(t), get_args(t)
    if origin is Union:
        if raw is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return from_jsonable(inner[0], raw, where) if len(inner) == 1 else raw
    if dataclasses.is_dataclass(t) and isinstance(t, type):
        if not isinstance(raw, dict):
            raise TypeError(f"{where}: expected a {t.__name__} object, got {type(raw).__name__}")
        fields = {f.name: f for f in dataclasses.fields(t)}
        unknown = sorted(set(raw) - set(fields))
        missing = sorted(n for n, f in fields.items() if n not in raw
                         and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)  # type: ignore[misc]
        if unknown or missing:
            raise TypeError(f"{where}: does not match {t.__module__}.{t.__qualname__} "
                            f"(unknown fields {unknown}, missing fields {missing}); the stage "
                            "that wrote it ran older code: rerun it")
        hints = get_type_hints(t)
        return t(**{k: from_jsonable(hints.get(k, Any), v, f"{where}.{k}")
                    for k, v in raw.items()})
    if t is Path and isinstance(raw, str):
        return Path(raw)
    if isinstance(t, type) and issubclass(t, Enum):
        return t(raw)
    if origin in (list, List) and isinstance(raw, list) and args:
        return [from_jsonable(args[0], v, f"{where}[{i}]") for i, v in enumerate(raw)]
    if origin in (dict, Dict) and isinstance(raw, dict) and len(args) == 2:
        return {k: from_jsonable(args[1], v, f"{where}.{k}") for k, v in raw.items()}
    return raw


def _file_mode() -> int:
    """The mode `open()` gives a new file under this process's umask (mkstemp's is 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _file_mode())
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


Pointer = List[Any]  # keys / list indices from the manifest's root to one value
RELATIVE_KEYS = ("counts", "metrics", "result", "used", "warnings")  # where paths are relativised


def _is_under(p: str, root: str) -> bool:
    return p == root or p.startswith(root.rstrip(os.sep) + os.sep)


def relativize(obj: Any, root: Path | str, at: Optional[Pointer] = None,
               found: Optional[List[Pointer]] = None) -> tuple[Any, List[Pointer]]:
    """`obj` (JSON-like) with every string that is an absolute path under `root` made relative
    to it ("." for `root` itself), and the pointers of the strings it changed."""
    at = at or []
    found = [] if found is None else found
    base = os.path.abspath(str(root))
    if isinstance(obj, str):
        if os.path.isabs(obj) and _is_under(os.path.abspath(obj), base):
            found.append(list(at))
            return os.path.relpath(os.path.abspath(obj), base), found
        return obj, found
    if isinstance(obj, dict):
        return {k: relativize(v, root, at + [k], found)[0] for k, v in obj.items()}, found
    if isinstance(obj, list):
        return [relativize(v, root, at + [i], found)[0] for i, v in enumerate(obj)], found
    return obj, found


def absolutize(m: Dict[str, Any], root: Path | str, pointers: List[Pointer]) -> Dict[str, Any]:
    """The inverse of `relativize` (in place) for the values at `pointers`, under `root`."""
    base = os.path.abspath(str(root))
    for ptr in pointers:
        cur: Any = m
        try:
            for k in ptr[:-1]:
                cur = cur[k]
            rel = cur[ptr[-1]]
        except (KeyError, IndexError, TypeError):
            continue  # a value edited out of the file by hand
        if isinstance(rel, str):
            cur[ptr[-1]] = base if rel == "." else os.path.join(base, rel)
    return m


def write_manifest(stage_dir: Path | str, stage: str, config_hash_: str,
                   inputs: Optional[Dict[str, str]] = None, counts: Optional[Dict[str, Any]] = None,
                   outputs: Optional[List[str]] = None, wall_s: Optional[float] = None,
                   extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Write `manifest.json` last, atomically: the stage is complete once it exists.

    Paths under the run folder (the stage folder's parent) in `RELATIVE_KEYS` are stored
    relative to it. Returns the manifest as `read_manifest` reads it back."""
    m: Dict[str, Any] = {
        "schema": SCHEMA,
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
    run_dir = Path(stage_dir).parent
    pointers: List[Pointer] = []
    for k in RELATIVE_KEYS:
        if k in m:
            m[k] = relativize(jsonable(m[k]), run_dir, [k], pointers)[0]
    m["relative_paths"] = pointers
    _atomic_write_text(Path(stage_dir) / MANIFEST, json.dumps(m, indent=2, ensure_ascii=False))
    m["manifest_hash"] = manifest_hash(m)
    return absolutize(m, run_dir, pointers)


def read_manifest(stage_dir: Path | str) -> Optional[Dict[str, Any]]:
    """The stage's manifest (None when it has not finished), its run-folder paths absolute
    under the folder it is read from; `manifest_hash` holds the hash of the stored form."""
    p = Path(stage_dir) / MANIFEST
    if not p.exists():
        return None
    m = json.loads(p.read_text(encoding="utf-8"))
    m["manifest_hash"] = manifest_hash(m)
    return absolutize(m, Path(stage_dir).parent, m.get("relative_paths") or [])


def manifest_hash(m: Dict[str, Any]) -> str:
    """Identity of a finished stage output, for downstream stages' `inputs` (of the stored,
    run-folder-relative form: `read_manifest` records it as `m["manifest_hash"]`)."""
    if "manifest_hash" in m:
        return str(m["manifest_hash"])
    return config_hash(m.get("config_hash"), m.get("inputs"), m.get("counts"), m.get("result"))
