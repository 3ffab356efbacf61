"""The stage graph runner: cached, resumable, one folder per stage under `runs/<exp>/`.

A `Stage` is a function of (its config, its inputs' outputs) -> a `StageResult`. The runner
  1. builds the stage's config (`pipeline.overrides[stage]` merged in) and its cache key: the
     hash of the config sections the stage declares it `reads` + its inputs' manifest hashes;
  2. skips the stage when `<stage>/manifest.json` carries the same key (unless forced);
  3. otherwise wipes outputs written under a *different* key (stale), keeps outputs written by an
     interrupted attempt under the *same* key (the stage functions resume from them), records
     the attempt in `<stage>/attempt.json`, runs the stage, and writes `manifest.json` last.
So a run killed anywhere and re-run redoes no finished stage, and a stage never looks complete
before its manifest exists. Changing one stage's config changes its key and, through the
manifest hashes, the keys of everything downstream of it, and nothing upstream.
"""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from jz3.config.root import JZ3Config
from jz3.data.records import atomic_write_text
from jz3.pipeline.manifest import MANIFEST, manifest_hash, read_manifest, write_manifest
from jz3.pipeline.stage_config import get_dotted, stage_config, stage_key

log = logging.getLogger("jz3.pipeline")
ATTEMPT = "attempt.json"


@dataclass
class StageOutput:
    """A finished stage as seen by the stages after it."""

    name: str
    dir: Path
    manifest: Dict[str, Any]

    @property
    def out(self) -> Path:
        """Where the stage function wrote its files (`<stage>/out`)."""
        return self.dir / "out"

    @property
    def metrics(self) -> Dict[str, Any]:
        return self.manifest.get("metrics", {})


@dataclass
class StageContext:
    name: str
    cfg: JZ3Config  # this stage's config (root + its overrides); the stage may edit its copy
    dir: Path  # runs/<exp>/<stage>
    inputs: Dict[str, StageOutput]
    shard: Optional[int] = None  # set for one shard of a sharded stage (SLURM array task)
    num_shards: Optional[int] = None

    @property
    def out(self) -> Path:
        p = self.dir / "out"
        p.mkdir(parents=True, exist_ok=True)
        return p


@dataclass
class StageResult:
    counts: Dict[str, Any] = field(default_factory=dict)  # records in / out / rejected
    outputs: List[str] = field(default_factory=list)  # paths relative to the stage dir
    metrics: Dict[str, Any] = field(default_factory=dict)  # small numbers the report plots


@dataclass
class Stage:
    name: str
    fn: Callable[[StageContext], StageResult]
    inputs: Sequence[str] = ()
    reads: Sequence[str] = ()  # dotted config sections that are part of the cache key
    version: str = "1"  # bump when the stage's code changes what it writes
    # Sharded stages (SLURM arrays): `shard_fn` for each shard, then `fn` merges; the shard
    # count is the config value at the dotted `shards_key` (cluster mode sets it to the array).
    shard_fn: Optional[Callable[[StageContext], None]] = None
    shards_key: Optional[str] = None
    enabled: Callable[[JZ3Config], bool] = lambda cfg: True


@dataclass
class StageStatus:
    name: str
    status: str  # "cached" | "ran" | "skipped"
    wall_s: float = 0.0
    reason: str = ""


class PipelineError(RuntimeError):
    pass


def num_shards(cfg: JZ3Config, stage: Stage) -> int:
    return max(1, int(get_dotted(cfg, stage.shards_key))) if stage.shards_key else 1


def stage_dir(cfg: JZ3Config, name: str) -> Path:
    return Path(cfg.run_dir) / name


def select_stages(cfg: JZ3Config, stages: Sequence[Stage]) -> List[Stage]:
    """The stages to run, in graph order: `pipeline.stages` (empty = all enabled ones)."""
    names = [s.name for s in stages]
    for n in list(cfg.pipeline.stages) + list(cfg.pipeline.force):
        if n not in names:
            raise PipelineError(f"unknown stage {n!r} in pipeline.stages/force; known: {names}")
    want = set(cfg.pipeline.stages) or {s.name for s in stages}
    return [s for s in stages if s.name in want and s.enabled(cfg)]


def _finished_input(cfg: JZ3Config, stage: Stage, dep: str) -> StageOutput:
    d = stage_dir(cfg, dep)
    m = read_manifest(d)
    if m is None:
        raise PipelineError(f"stage {stage.name!r} needs {dep!r}, which has not finished "
                            f"(no {d / MANIFEST}); run it first")
    return StageOutput(dep, d, m)


def plan_stage(cfg: JZ3Config, stage: Stage) -> tuple[JZ3Config, str, Dict[str, StageOutput]]:
    """The stage's config, cache key and finished inputs."""
    scfg = stage_config(cfg, stage.name)
    inputs = {dep: _finished_input(cfg, stage, dep) for dep in stage.inputs}
    return scfg, stage_key(scfg, stage.reads, stage.version), inputs


def _input_hashes(inputs: Dict[str, StageOutput]) -> Dict[str, str]:
    return {k: manifest_hash(v.manifest) for k, v in inputs.items()}


def is_current(cfg: JZ3Config, stage: Stage) -> tuple[bool, str]:
    """Whether the stage's manifest matches its current key and inputs (and why not)."""
    d = stage_dir(cfg, stage.name)
    m = read_manifest(d)
    if m is None:
        return False, "no manifest"
    try:
        _, key, inputs = plan_stage(cfg, stage)
    except PipelineError as e:
        return False, str(e)
    if m.get("config_hash") != key:
        return False, "config changed"
    if m.get("inputs") != _input_hashes(inputs):
        return False, "inputs changed"
    return True, "cached"


def prepare_dir(d: Path, key: str, inputs: Dict[str, str], fresh: bool) -> None:
    """Keep an interrupted attempt with the same key (resume); wipe anything else.

    Serialised by a lock file beside the stage folder: SLURM array tasks of one stage call it
    concurrently and must not wipe each other's shards.
    """
    d.parent.mkdir(parents=True, exist_ok=True)
    with open(d.parent / f".{d.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _prepare_dir_locked(d, key, inputs, fresh)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _prepare_dir_locked(d: Path, key: str, inputs: Dict[str, str], fresh: bool) -> None:
    attempt = d / ATTEMPT
    same = False
    if attempt.exists() and not fresh:
        try:
            a = json.loads(attempt.read_text(encoding="utf-8"))
            same = a.get("config_hash") == key and a.get("inputs") == inputs
        except (OSError, ValueError):
            same = False
    if d.exists() and not same:
        if any(d.iterdir()):
            log.info("%s: removing outputs of a different config/input", d)
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)
    if not same:
        atomic_write_text(attempt, json.dumps({"config_hash": key, "inputs": inputs,
                                               "started_at": time.time()}))


def run_shard(cfg: JZ3Config, stage: Stage, shard: int, num_shards: int) -> None:
    """One shard of a sharded stage (a SLURM array task); the merge job writes the manifest."""
    if stage.shard_fn is None:
        raise PipelineError(f"stage {stage.name!r} is not sharded")
    d = stage_dir(cfg, stage.name)
    scfg, key, inputs = plan_stage(cfg, stage)
    prepare_dir(d, key, _input_hashes(inputs), fresh=False)
    log.info("stage %s shard %d/%d in %s", stage.name, shard, num_shards, d)
    stage.shard_fn(StageContext(stage.name, scfg, d, inputs, shard=shard, num_shards=num_shards))


def run_stage(cfg: JZ3Config, stage: Stage, force: bool = False,
              run_shards: bool = True) -> StageStatus:
    """Run one stage unless cached. `run_shards=False`: shards ran as array tasks; only merge."""
    d = stage_dir(cfg, stage.name)
    current, why = is_current(cfg, stage)
    if current and not force:
        log.info("stage %-14s cached (%s)", stage.name, d / MANIFEST)
        return StageStatus(stage.name, "cached", reason="manifest matches")
    scfg, key, inputs = plan_stage(cfg, stage)
    hashes = _input_hashes(inputs)
    old = read_manifest(d)
    if old is not None:
        (d / MANIFEST).unlink()  # from here on the stage is incomplete
    prepare_dir(d, key, hashes, fresh=force or (old is not None and run_shards))
    log.info("stage %-14s running (%s) in %s", stage.name, "forced" if force else why, d)
    t0 = time.time()
    n = num_shards(scfg, stage)
    if stage.shard_fn is not None and run_shards:
        for shard in range(n):
            stage.shard_fn(StageContext(stage.name, stage_config(cfg, stage.name), d, inputs,
                                        shard=shard, num_shards=n))
    res = stage.fn(StageContext(stage.name, scfg, d, inputs, num_shards=n))
    wall = time.time() - t0
    write_manifest(d, stage.name, key, hashes, counts=res.counts, outputs=res.outputs,
                   wall_s=round(wall, 3), extra={"metrics": res.metrics})
    log.info("stage %-14s done in %.1f s: %s", stage.name, wall, res.counts)
    return StageStatus(stage.name, "ran", wall_s=wall, reason=why)


def run_pipeline(cfg: JZ3Config, stages: Sequence[Stage],
                 on_done: Optional[Callable[[StageStatus], None]] = None) -> List[StageStatus]:
    """Run the selected stages in order; cached ones are skipped. Returns one status each."""
    out: List[StageStatus] = []
    force = set(cfg.pipeline.force)
    for stage in select_stages(cfg, stages):
        st = run_stage(cfg, stage, force=stage.name in force)
        out.append(st)
        if on_done:
            on_done(st)
    return out
