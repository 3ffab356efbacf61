"""The ablation's arms: the same model, trainer and token budget on the synthetic data vs the
raw snippet text, at one or more seeds. The arms may differ only in their data and seed
(`check_same_recipe`, checked before a run starts)."""

from __future__ import annotations

import dataclasses
import logging
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Sequence

from jz3.ablation.results import SeedRun
from jz3.ablation.verdict import Arm
from jz3.config.data import DataSource
from jz3.config.enums import TrainMode
from jz3.config.stages import PretrainRawStage, TrainJob
from jz3.data.records import read_records, write_jsonl

log = logging.getLogger(__name__)

RAW_SOURCE = "raw_snippets"

# Settings the ablation arms may differ in (besides their data): where they write, how often
# they log or save, how long they run (steps are matched separately), and the seed.
ARM_FREE = {"trainer": {"output_dir", "max_steps", "epochs", "seed", "save_every", "log_every",
                        "keep_last", "resume", "wandb", "mode", "init_from", "export_hf"},
            "data": {"sources", "packed_dir", "num_workers", "seed", "on_error"}}


def _plain(x: Any) -> Any:
    """A config value as plain data (enums as their values) for comparison and messages."""
    if isinstance(x, Enum):
        return x.value
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def check_same_recipe(raw: TrainJob, pretrain: TrainJob) -> None:
    """ValueError naming every model/trainer/data setting in which the raw arm's section
    (`stages.pretrain_raw`) differs from the synthetic arm's (`stages.pretrain`): the arms
    must differ only in their data (and seed)."""
    bad = []
    for part in ("model", "trainer", "data"):
        mine = _plain(dataclasses.asdict(getattr(raw, part)))
        theirs = _plain(dataclasses.asdict(getattr(pretrain, part)))
        for k in sorted(set(mine) | set(theirs)):
            if k not in ARM_FREE.get(part, set()) and mine.get(k) != theirs.get(k):
                bad.append(f"{part}.{k}: {mine.get(k)!r} vs {theirs.get(k)!r}")
    if bad:
        raise ValueError("stages.pretrain_raw differs from stages.pretrain in " + "; ".join(bad)
                         + ": the ablation arms must differ only in their data (and seed)")


def raw_text_source(snippets: Path, out: Path) -> DataSource:
    """The raw arm's data: each snippet's text as a `{"text"}` record (`out/raw_text.jsonl`)."""
    raw = out / "raw_text.jsonl"
    if not raw.exists():
        write_jsonl(raw, ({"text": r["text"]} for r in read_records(snippets)))
    return DataSource(RAW_SOURCE, str(raw), 1.0)


def train_seed_runs(job: PretrainRawStage, out: Path, raw: Sequence[DataSource],
                    synthetic: Sequence[DataSource]) -> List[SeedRun]:
    """Both arms again at each of `job.extra_seeds` (same steps, `trainer.seed` changed),
    under `out/seed<s>_<arm>/`; each arm's packed data is shared by its seeds."""
    from jz3.train.entry import train_stage

    if job.extra_seeds and not synthetic:
        raise ValueError("stages.pretrain_raw.extra_seeds: no synthetic data for the synthetic "
                         "arm (stages.pretrain_raw.synthetic_sources is empty)")
    runs: List[SeedRun] = []
    arms: Dict[Arm, tuple] = {Arm.raw: (list(raw), out / "packed"),
                              Arm.synthetic: (list(synthetic), out / "packed_synthetic")}
    for seed in job.extra_seeds:
        run = dataclasses.replace(job, trainer=dataclasses.replace(job.trainer, seed=seed))
        for arm, (sources, packed) in arms.items():
            log.info("pretrain_raw: %s arm, seed %d (%d steps)", arm.value, seed,
                     run.trainer.max_steps)
            r = train_stage(run, out / f"seed{seed}_{arm.value}", TrainMode.pretrain,
                            sources=sources, packed_dir=packed)
            runs.append(SeedRun(arm, seed, str(r.hf_export_dir), r.steps, r.tokens_seen,
                                r.final_loss))
    return runs
