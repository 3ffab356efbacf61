"""Training data: pack `cfg.data` once (rank 0), then a mixed packed dataset, a resumable
data-parallel `MixtureSampler` (the mixture, then `data.tail_sources` read after it) and a
DataLoader (see docs/DATA.md for the packing contract)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from torch.utils.data import DataLoader

from jz3.config.data import DataConfig
from jz3.parallel.dist import barrier

log = logging.getLogger(__name__)


def prepare_packed(data: DataConfig, tokenizer: Any, rank: int) -> Path:
    """Tokenize + pack the sources into `data.packed_dir` on rank 0 (idempotent; the other ranks,
    on any node of a shared filesystem, wait at a barrier)."""
    from jz3.data.packing import pack_sources

    out = Path(data.packed_dir)
    if not data.sources:
        raise ValueError("data.sources is empty: nothing to train on")
    if rank == 0:
        pack_sources(data, tokenizer, out)
    barrier()
    return out


@dataclass
class TrainData:
    dataset: Any
    sampler: Any
    micro_batch: int
    num_workers: int

    def loader(self) -> DataLoader:
        from jz3.data.packed_dataset import collate

        return DataLoader(self.dataset, batch_size=self.micro_batch, sampler=self.sampler,
                          collate_fn=collate, num_workers=self.num_workers,
                          persistent_workers=False, drop_last=False)


def open_dataset(data: DataConfig, packed_dir: Path) -> Any:
    """The mixture sources, then the tail sources, as one indexable dataset."""
    from jz3.data.packed_dataset import MixedPackedDataset
    from jz3.data.packing import all_sources

    names = [s.name for s in all_sources(data)]
    return MixedPackedDataset(packed_dir, data.seq_len, names=names, packing=data.packing)


def build_train_data(data: DataConfig, dataset: Any, micro_batch: int, seed: int, dp_rank: int,
                     dp_world: int, state: Optional[Dict[str, Any]] = None) -> TrainData:
    """Sampler over the mixture for this data-parallel rank, restored from `state` if given."""
    from jz3.data.sampler import MixtureSampler

    # natural_mix: one seeded permutation of every sequence of every source per pass (sources by
    # their sizes, each sequence once); the tail sources (after the mixture ones in `dataset`)
    # are read after the mixture
    n_mix = len(data.sources)
    lengths, tail = list(dataset.lengths[:n_mix]), list(dataset.lengths[n_mix:])
    weights = lengths if data.natural_mix else [s.weight for s in data.sources]
    sampler = MixtureSampler(lengths, weights=weights, seed=seed, rank=dp_rank,
                             world_size=dp_world, tail_lengths=tail,
                             tail_shuffle=data.tail_shuffle, natural=data.natural_mix)
    if tail:
        log.info("data: %d mixture sequences (%s), then %d tail sequences (%s, %s) per pass",
                 sum(lengths), [s.name for s in data.sources], sum(tail),
                 [s.name for s in data.tail_sources],
                 "shuffled" if data.tail_shuffle else "in file order")
    if state is not None:
        sampler.load_state_dict(state)
    workers = min(data.num_workers, 2)
    return TrainData(dataset, sampler, micro_batch, workers)
