"""The pack stage of the recipe: the pretraining data tokenized and packed once
(`jz3.data.packing`), for the pretrain stage to read. Importable without numpy."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, List, Sequence

from jz3.config.data import DataConfig, DataSource
from jz3.data.records import IOStats


@dataclasses.dataclass
class SourceCounts:
    """One packed source (`pack.json`'s "counts" value): documents, tokens, loss-target tokens,
    and its records read / rejected."""

    n_docs: int
    n_tokens: int
    n_target_tokens: int
    records: IOStats


@dataclasses.dataclass
class PackResult:
    packed_dir: str
    sources: List[str] = dataclasses.field(default_factory=list)
    counts: Dict[str, SourceCounts] = dataclasses.field(default_factory=dict)  # source ->


def run_pack_stage(data: DataConfig, sources: Sequence[DataSource],
                   out_dir: str | Path) -> PackResult:
    """Pack `sources` (and `data.tail_sources`) with `data`'s tokenizer under `out_dir`."""
    from jz3.data.packing import pack_sources, read_pack_index
    from jz3.data.tokenizers import load_tokenizer

    data = dataclasses.replace(data, sources=list(sources))
    out = pack_sources(data, load_tokenizer(data.tokenizer), out_dir)
    index = read_pack_index(out) or {}
    counts = {n: SourceCounts(c["n_docs"], c["n_tokens"], c["n_target_tokens"],
                              IOStats(**c["records"]))
              for n, c in index.get("counts", {}).items()}
    return PackResult(str(out), [s.name for s in sources], counts)
