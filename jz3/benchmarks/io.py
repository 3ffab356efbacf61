"""Reading benchmark files: JSONL (one record per line) or a JSON list / dict of records; every
error names the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Tuple


class BenchmarkFormatError(ValueError):
    """A benchmark file or record is malformed (the message names file:line and field)."""


def read_records(path: Path) -> Iterator[Tuple[int, Any]]:
    """(line number or position, record) of a `.jsonl` file, or of a `.json` list/dict."""
    path = Path(path)
    if path.suffix == ".json":
        raw = path.read_bytes()
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            line = raw[:e.start].count(b"\n") + 1
            raise BenchmarkFormatError(f"{path}:{line}: invalid UTF-8 ({e.reason} at byte "
                                       f"{e.start})") from e
        except json.JSONDecodeError as e:
            raise BenchmarkFormatError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from e
        rows = data.values() if isinstance(data, dict) else data
        for i, r in enumerate(rows, 1):
            yield i, r
        return
    with path.open("rb") as f:
        for i, raw_line in enumerate(f, 1):
            try:
                line = raw_line.decode("utf-8")
            except UnicodeDecodeError as e:
                raise BenchmarkFormatError(f"{path}:{i}: invalid UTF-8 ({e.reason} at byte "
                                           f"{e.start} of the line)") from e
            if not line.strip():
                continue
            try:
                yield i, json.loads(line)
            except json.JSONDecodeError as e:
                raise BenchmarkFormatError(f"{path}:{i}: invalid JSON ({e.msg})") from e
