"""Streaming, validated record IO: JSONL and Parquet, sharded, with atomic writes.

Every record kind of DESIGN.md has a schema here. Bad input raises `RecordError`, whose message
names the file, line and field; with `OnError.quarantine` the record goes to a `Quarantine`
(`rejected.jsonl`) with its reason instead, and `IOStats` counts what came in, out and was
rejected, so nothing is ever dropped silently.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from jz3.config.enums import OnError

PathLike = Union[str, os.PathLike]
RECORD_SUFFIXES = (".jsonl", ".parquet")


class RecordKind(str, Enum):
    corpus = "corpus"
    snippet = "snippet"
    kd = "kd"  # teacher-written (knowledge distillation) records
    synth = "synth"  # synthesizer-written records, same shape as kd
    train = "train"  # {"input","output"} or {"text"}
    example = "example"  # train, or a kd/synth-shaped {"prompt","completion",...} (packing input)
    prediction = "prediction"
    any = "any"  # any JSON object


# field -> (accepted types, required, must be a non-empty string)
_Spec = Tuple[Tuple[type, ...], bool, bool]
_STR = (str,)
_PROBLEM: Dict[str, _Spec] = {
    "id": (_STR, True, True),
    "snippet_id": (_STR, True, True),
    "prompt_type": (_STR, True, True),
    "prompt": (_STR, True, True),
    "completion": (_STR, True, False),
    "problem": (_STR, True, True),
    "solution": (_STR, True, True),
    "answer": ((str, type(None)), False, False),
    "model": (_STR, True, True),
    "usage": ((dict, type(None)), False, False),
}
SCHEMAS: Dict[RecordKind, Dict[str, _Spec]] = {
    RecordKind.corpus: {
        "id": (_STR, True, True),
        "text": (_STR, True, True),
        "source": (_STR, True, True),
        "meta": ((dict, type(None)), False, False),
    },
    RecordKind.snippet: {
        "id": (_STR, True, True),
        "doc_id": (_STR, True, True),
        "text": (_STR, True, True),
        "source": (_STR, True, True),
        "prompt_type": (_STR, True, True),
    },
    RecordKind.kd: _PROBLEM,
    RecordKind.synth: _PROBLEM,
    RecordKind.prediction: {
        "benchmark": (_STR, True, True),
        "idx": ((int, str), True, False),
        "question": (_STR, True, False),
        "gold": (_STR, True, False),
        "output": (_STR, True, False),
        "pred": ((str, type(None)), True, False),
        "correct": ((bool,), True, False),
    },
}


class RecordError(ValueError):
    """A bad record or file; the message says `file:line: field 'f': reason`."""

    def __init__(self, file: PathLike, line: int, reason: str, field: Optional[str] = None):
        self.file, self.line, self.field, self.reason = str(file), line, field, reason
        where = f"{self.file}:{line}" if line else self.file
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{reason}")


def validate(record: Any, kind: RecordKind) -> Optional[Tuple[Optional[str], str]]:
    """Return None when `record` is a valid `kind`, else (field, reason)."""
    if not isinstance(record, dict):
        return None, f"expected a JSON object, got {type(record).__name__}"
    if kind == RecordKind.any:
        return None
    if kind == RecordKind.example and ("prompt" in record or "completion" in record):
        return _check_fields(
            record, {"prompt": (_STR, True, False), "completion": (_STR, True, True)}
        )
    if kind in (RecordKind.train, RecordKind.example):
        if "text" in record:
            return _check_fields(record, {"text": (_STR, True, True)})
        if "input" in record or "output" in record:
            return _check_fields(
                record, {"input": (_STR, True, False), "output": (_STR, True, True)}
            )
        return None, "a train record needs 'text' or 'input'+'output'"
    return _check_fields(record, SCHEMAS[kind])


def _check_fields(record: dict, schema: Dict[str, _Spec]) -> Optional[Tuple[Optional[str], str]]:
    for name, (types, required, nonempty) in schema.items():
        if name not in record:
            if required:
                return name, "missing"
            continue
        value = record[name]
        if isinstance(value, bool) and bool not in types:
            return name, f"expected {_type_names(types)}, got bool"
        if not isinstance(value, types):
            return name, f"expected {_type_names(types)}, got {type(value).__name__}"
        if nonempty and isinstance(value, str) and not value.strip():
            return name, "empty text"
    return None


def _type_names(types: Tuple[type, ...]) -> str:
    names = {"NoneType": "null", "str": "string", "int": "integer", "dict": "object"}
    return " or ".join(names.get(t.__name__, t.__name__) for t in types)


@dataclass
class IOStats:
    """Counts for a stage's manifest: records read, kept, rejected (and by reason), written."""

    read: int = 0
    ok: int = 0
    rejected: int = 0
    written: int = 0
    reasons: Dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str) -> None:
        self.rejected += 1
        key = reason.split(":", 1)[0]
        self.reasons[key] = self.reasons.get(key, 0) + 1

    def as_dict(self) -> Dict[str, Any]:
        return {"read": self.read, "ok": self.ok, "rejected": self.rejected,
                "written": self.written, "reasons": dict(self.reasons)}


class Quarantine:
    """Appends rejected records, with their reason and place, to a `rejected.jsonl`."""

    def __init__(self, path: PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: Optional[IO[str]] = None
        self.count = 0

    def add(self, reason: str, record: Any = None, file: Optional[str] = None,
            line: Optional[int] = None, field: Optional[str] = None, **extra: Any) -> None:
        if self._fh is None:
            self._fh = open(self.path, "a", encoding="utf-8")
        row = {"reason": reason, "file": file, "line": line, "field": field, "record": record}
        row.update(extra)
        self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._fh.flush()
        self.count += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> Quarantine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def expand_paths(spec: Union[PathLike, Sequence[PathLike]]) -> List[Path]:
    """Files named by a path, a folder (its *.jsonl / *.parquet, sorted) or a glob, or a list."""
    if isinstance(spec, (list, tuple)):
        return [p for s in spec for p in expand_paths(s)]
    p = Path(spec)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix in RECORD_SUFFIXES
                       and f.name != "rejected.jsonl" and not f.name.startswith("."))
        return files
    if any(ch in str(spec) for ch in "*?["):
        files = sorted(Path(f) for f in glob.glob(str(spec)))
        if not files:
            raise RecordError(spec, 0, "no file matches this pattern")
        return files
    if not p.exists():
        raise RecordError(p, 0, "file does not exist")
    return [p]


def read_records(
    spec: Union[PathLike, Sequence[PathLike]],
    kind: RecordKind = RecordKind.any,
    on_error: OnError = OnError.raise_,
    quarantine: Optional[Quarantine] = None,
    stats: Optional[IOStats] = None,
) -> Iterator[Dict[str, Any]]:
    """Stream validated records from JSONL/Parquet files (see `expand_paths`)."""
    if on_error == OnError.quarantine and quarantine is None:
        raise ValueError("on_error=quarantine needs a Quarantine to write rejected records to")
    stats = stats if stats is not None else IOStats()
    for path in expand_paths(spec):
        for line_no, record, err in iter_rows(path):
            stats.read += 1
            if err is None:
                bad = validate(record, kind)
                if bad is not None:
                    err = (bad[0], bad[1])
            if err is None:
                stats.ok += 1
                yield record
                continue
            fld, reason = err
            if on_error == OnError.raise_:
                raise RecordError(path, line_no, reason, fld)
            stats.reject(reason)
            assert quarantine is not None
            quarantine.add(reason, record, file=str(path), line=line_no, field=fld)


_Row = Tuple[int, Any, Optional[Tuple[Optional[str], str]]]


def iter_rows(path: PathLike) -> Iterator[_Row]:
    """(line number in the file (Parquet: row number), record or raw text, None or (field,
    reason)) for every non-blank line: the one JSONL/Parquet reader behind every stage's input,
    so a decode error always names its file:line."""
    p = Path(path)
    return _iter_parquet(p) if p.suffix == ".parquet" else _iter_jsonl(p)


def _iter_jsonl(path: Path) -> Iterator[_Row]:
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield line_no, raw.decode("utf-8", "replace").rstrip("\n"), (
                    None, f"invalid UTF-8 at byte {e.start}")
                continue
            try:
                yield line_no, json.loads(text), None
            except json.JSONDecodeError as e:
                yield line_no, text.rstrip("\n"), (None, f"malformed JSON: {e.msg} at column {e.colno}")


def _iter_parquet(path: Path) -> Iterator[_Row]:
    import pyarrow.parquet as pq

    line_no = 0
    for batch in pq.ParquetFile(path).iter_batches():
        for row in batch.to_pylist():
            line_no += 1
            yield line_no, row, None


def count_lines(path: PathLike) -> int:
    """Number of non-empty lines of a JSONL file (0 when it does not exist)."""
    p = Path(path)
    if not p.exists():
        return 0
    with open(p, "rb") as fh:
        return sum(1 for raw in fh if raw.strip())


class AtomicJsonlWriter:
    """Write JSONL to a temp file beside `path`; rename into place on a clean close only."""

    def __init__(self, path: PathLike, stats: Optional[IOStats] = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self._tmp = Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        self._fh = os.fdopen(fd, "w", encoding="utf-8")
        self.count = 0
        self.stats = stats

    def write(self, record: Dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.count += 1
        if self.stats is not None:
            self.stats.written += 1

    def commit(self) -> Path:
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        _fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicJsonlWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_jsonl(path: PathLike, records: Iterable[Dict[str, Any]]) -> int:
    """Atomically write records to a JSONL file; returns how many were written."""
    with AtomicJsonlWriter(path) as w:
        for r in records:
            w.write(r)
    return w.count


def write_parquet(path: PathLike, records: Iterable[Dict[str, Any]]) -> int:
    """Atomically write records to a Parquet file; returns how many were written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(records)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    try:
        pq.write_table(pa.Table.from_pylist(rows), tmp)
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(rows)


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write a small text file (a manifest, a report) atomically."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp.{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)  # no temp file outlives a failed write
        raise


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def shard_name(shard: int, num_shards: int, suffix: str = ".jsonl") -> str:
    """`part-{shard:05d}-of-{num_shards:05d}.jsonl`, the sharded-output naming of DESIGN.md."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} out of range for num_shards={num_shards}")
    return f"part-{shard:05d}-of-{num_shards:05d}{suffix}"


def shard_from_env(shard: Optional[int], num_shards: Optional[int]) -> Tuple[int, int]:
    """Resolve (shard, num_shards): explicit values, else SLURM array variables, else (0, 1).

    The shard is `SLURM_ARRAY_TASK_ID` itself (arrays are `--array=0-(n-1)`), so rerunning one
    task with `--array=17` is still shard 17; such a rerun must pass `num_shards` explicitly,
    since its `SLURM_ARRAY_TASK_COUNT` is 1.
    """
    if num_shards is None:
        num_shards = int(os.environ.get("SLURM_ARRAY_TASK_COUNT", "1"))
    if shard is None:
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        shard = int(task) if task is not None else 0
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} out of range for num_shards={num_shards} "
                         "(rerunning part of an array? pass num_shards explicitly)")
    return shard, num_shards


# A stage's counter as its result records it: a number, a name, a list of numbers (per-shard
# wall times) or a tally (reason -> count); stats are data the report shows, not graph wiring.
Stat = Union[int, float, str, bool, None, List[float], Dict[str, int], Dict[str, float]]
Stats = Dict[str, Stat]


def scalar_stats(stats: Any) -> Stats:
    """The JSON-friendly part of a stats object (a dataclass or dict): numbers, strings, None,
    and small dicts of numbers; for manifests and reports."""
    import dataclasses

    if stats is None:
        return {}
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        d = dataclasses.asdict(stats)
    elif isinstance(stats, dict):
        d = dict(stats)
    else:
        return {"value": str(stats)}
    out: Stats = {}
    for k, v in d.items():
        if isinstance(v, (int, float, str, bool)) or v is None:
            out[k] = v
        elif isinstance(v, dict) and all(isinstance(x, (int, float)) for x in v.values()):
            out[k] = dict(v)
    return out
