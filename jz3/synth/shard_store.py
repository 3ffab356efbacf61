"""A shard's output as a folder of atomically committed chunks: the unit of resume.

Layout under `<out_dir>/shards/`:
  part-00001-of-00004/chunk-00000.jsonl ...  one envelope per snippet:
      {"snippet_id", "status": "ok"|"failed", "record": synth record | null, "reason": str | null}
  part-00001-of-00004.done.json              written last, with the shard's counts

A chunk is renamed into place only once complete, so a killed task leaves at most a `.tmp` file
(removed on restart); a restarted task skips every snippet found in committed chunks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set

from jz3.data.records import AtomicJsonlWriter, atomic_write_text, read_records, shard_name

OK, FAILED = "ok", "failed"
_CHUNK = re.compile(r"^chunk-(\d{5})\.jsonl$")


class ShardStore:
    def __init__(self, out_dir: Path | str, shard: int, num_shards: int):
        self.root = Path(out_dir) / "shards"
        self.name = shard_name(shard, num_shards, suffix="")
        self.dir = self.root / self.name
        self.done_path = self.root / f"{self.name}.done.json"

    def chunks(self) -> List[Path]:
        if not self.dir.exists():
            return []
        return sorted(p for p in self.dir.iterdir() if _CHUNK.match(p.name))

    def clean_partial(self) -> int:
        """Remove temp files a killed task left behind; returns how many."""
        n = 0
        if self.dir.exists():
            for p in self.dir.glob(".chunk-*.tmp"):
                p.unlink()
                n += 1
        return n

    def envelopes(self) -> Iterator[Dict[str, Any]]:
        for path in self.chunks():
            yield from read_records(path)

    def done_ids(self) -> Set[str]:
        return {e["snippet_id"] for e in self.envelopes()}

    def commit_chunk(self, envelopes: List[Dict[str, Any]]) -> Path:
        existing = [int(_CHUNK.match(p.name).group(1)) for p in self.chunks()]  # type: ignore[union-attr]
        index = max(existing, default=-1) + 1
        with AtomicJsonlWriter(self.dir / f"chunk-{index:05d}.jsonl") as w:
            for e in envelopes:
                w.write(e)
        return w.path

    def check_config(self, chash: str) -> None:
        """Pin the shard folder to one config: resuming under another config is an error."""
        pin = self.dir / "config_hash"
        if pin.exists():
            old = pin.read_text().strip()
            if old != chash:
                raise ValueError(f"{self.dir} was written with config {old}, now {chash}: "
                                 "use a fresh synth.out_dir (or delete the old shards)")
            return
        atomic_write_text(pin, chash)

    def mark_done(self, counts: Dict[str, Any]) -> None:
        atomic_write_text(self.done_path, json.dumps(counts, indent=2))

    def done_info(self) -> Optional[Dict[str, Any]]:
        if not self.done_path.exists():
            return None
        return json.loads(self.done_path.read_text())


def envelope(snippet_id: str, record: Optional[Dict[str, Any]] = None,
             reason: Optional[str] = None, extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    e = {"snippet_id": snippet_id, "status": OK if record is not None else FAILED,
         "record": record, "reason": reason}
    if extra:
        e.update(extra)
    return e
