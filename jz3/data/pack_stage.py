"""The pack stage of the recipe: the pretraining data tokenized and packed once
(`jz3.data.packing`), for the pretrain stage to read. Importable without numpy."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Sequence

from jz3.config.data import DataConfig, DataSource


@dataclasses.dataclass
class PackResult:
    packed_dir: str
    sources: List[str] = dataclasses.field(default_factory=list)
    counts: Dict[str, Any] = dataclasses.field(default_factory=dict)


def run_pack_stage(data: DataConfig, sources: Sequence[DataSource],
                   out_dir: str | Path) -> PackResult:
    """Pack `sources` (and `data.tail_sources`) with `data`'s tokenizer under `out_dir`."""
    from jz3.data.packing import pack_sources, read_pack_index
    from jz3.data.tokenizers import load_tokenizer

    data = dataclasses.replace(data, sources=list(sources))
    out = pack_sources(data, load_tokenizer(data.tokenizer), out_dir)
    index = read_pack_index(out) or {}
    return PackResult(str(out), [s.name for s in sources], index.get("counts", {}))
