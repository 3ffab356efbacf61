"""The stage graph runner: cached, resumable, one folder per stage under `runs/<exp>/`.

A `Stage` is a function of (its typed config section `cfg.stages.<section>`, its inputs' typed
results, its output folder) -> a `StageResult`. Values a section derives from its inputs (a
synthesizer's folder, a step count) are filled by the stage's `resolve`, the same function for
the plan (`plan.txt`, `pipeline.plan=true`, SLURM dry runs) and for the run; a stage about to
run with a section other than its plan line stops (`check_planned`). The runner alone owns
provenance:
  1. the stage's cache key is the hash of its resolved config section (dataclass -> JSON, paths
     under `run_dir` relative to it), of the code it runs (`jz3.provenance.code`: the source of
     the jz3 modules its functions reach) and the manifest hashes of the inputs it uses;
  2. it skips the stage when `<stage>/manifest.json` carries the same key (unless forced);
  3. otherwise it wipes outputs written under a *different* key (stale), keeps outputs written
     by an interrupted attempt under the *same* key (the stage functions resume from them),
     records the attempt in `<stage>/attempt.json`, runs the stage, and writes `manifest.json`
     last (resolved config section, input hashes, counts, typed result, and `used`: what the stage
     actually built and ran, read back from its records; `used_evidence`).
A stage that fails (any exception; `jz3.errors.StageFailed` when it ran but produced nothing
useful) writes no manifest, so the next run retries it. A run killed anywhere and re-run redoes
no finished stage, and a stage never looks complete before its manifest exists. Changing one
stage's section or code changes its key and, through the manifest hashes, the keys of
everything downstream of it, and nothing upstream; a setting no stage receives changes no key.
"""

from __future__ import annotations

import copy
import dataclasses
import fcntl
import importlib
import json
import logging
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    Any,
    Callable,
    Dict,
    Generic,
    List,
    Optional,
    Protocol,
    Sequence,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    runtime_checkable,
)

from jz3.config.root import JZ3Config
from jz3.data.records import atomic_write_text
from jz3.errors import StageFailed
from jz3.provenance import (
    MANIFEST,
    SCHEMA,
    config_hash,
    jsonable,
    manifest_hash,
    read_manifest,
    relativize,
    write_manifest,
)
from jz3.provenance.code import code_hash
from jz3.provenance.manifest import from_jsonable

log = logging.getLogger("jz3.pipeline")
ATTEMPT = "attempt.json"
PLAN_FILE = "plan.txt"
OUT = "out"  # a stage function writes under <run_dir>/<stage>/out


def get_dotted(obj: Any, dotted: str) -> Any:
    """`get_dotted(cfg, "stages.pretrain.data")` (dicts and dataclasses)."""
    cur = obj
    for part in dotted.split("."):
        cur = cur[part] if isinstance(cur, dict) else getattr(cur, part)
    return cur


def _type_name(t: type) -> str:
    return f"{t.__module__}:{t.__qualname__}"


def _load_type(name: str) -> type:
    mod, _, qual = name.partition(":")
    obj: Any = importlib.import_module(mod)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass
class StageOutput:
    """A finished stage as seen by the stages after it."""

    name: str
    dir: Path
    manifest: Dict[str, Any]

    @property
    def out(self) -> Path:
        """Where the stage function wrote its files (`<stage>/out`)."""
        return self.dir / OUT

    @property
    def metrics(self) -> Dict[str, Any]:
        return self.manifest.get("metrics", {})

    @property
    def result(self) -> Any:
        """The stage's typed result (the dataclass its function returned), from the manifest:
        a field the type does not have, or lacks, is an error (the writer ran other code)."""
        raw, name = self.manifest.get("result"), self.manifest.get("result_type")
        if raw is None or name is None:
            raise KeyError(f"{self.dir / MANIFEST}: no typed result recorded")
        return from_jsonable(_load_type(name), raw, f"{self.dir / MANIFEST}: result")


@dataclass
class NoInputs:
    """The inputs of a stage that reads no other stage's output."""


T = TypeVar("T")
R = TypeVar("R")


def required(value: Optional[T], name: str) -> T:
    """An input field the stage's section says it uses (the runner filled it)."""
    if value is None:
        raise PipelineError(f"input {name!r} was not filled: the stage's `needs` does not list "
                            "it for this config section")
    return value


@dataclass
class StageContext:
    name: str
    cfg: Any  # this stage's own config section (a copy); never the root config
    dir: Path  # runs/<exp>/<stage>
    # the stage's `Inputs` dataclass: one field per upstream stage, its typed result (None when
    # the section does not use it)
    inputs: Any
    shard: Optional[int] = None  # set for one shard of a sharded stage (SLURM array task)
    num_shards: Optional[int] = None
    seed: int = 0  # the run's root seed
    run_dir: Path = Path(".")

    @property
    def out(self) -> Path:
        p = self.dir / OUT
        p.mkdir(parents=True, exist_ok=True)
        return p


@dataclass
class StageResult(Generic[R]):
    counts: Dict[str, Any] = field(default_factory=dict)  # records in / out / rejected
    outputs: List[str] = field(default_factory=list)  # paths relative to the stage dir
    metrics: Dict[str, Any] = field(default_factory=dict)  # small numbers the report plots
    result: Optional[R] = None  # the stage's typed result (a dataclass); downstream reads it
    # legitimate but suspicious outcomes (e.g. a filter that kept nothing): logged, and put in
    # the manifest's `warnings` with those of `result.warnings`
    warnings: List[str] = field(default_factory=list)


class Deferred(str):
    """A section value that only an upstream stage's data gives (e.g. pretrain's step count from
    `trainer.epochs`): the plan shows the marker `<stage.result.field>`; the runner resolves it
    from the finished input before the stage runs."""

    @classmethod
    def of(cls, stage: str, field_: str) -> Deferred:
        return cls(f"<{stage}.result.{field_}>")


_MARKER = re.compile(r"^<\w+\.result\.\w+>$")


def is_deferred(value: Any) -> bool:
    """Whether `value` is a deferred marker (a `Deferred`, or its text read back from a plan)."""
    return isinstance(value, str) and bool(_MARKER.match(value))


@dataclass
class Upstream:
    """One input of a stage as its resolver sees it: the upstream stage's folder (fixed before
    it runs) and, once it has finished, its typed result (None while planning)."""

    name: str
    dir: Path  # absolute: <run_dir>/<stage>
    result: Any = None

    @property
    def out(self) -> Path:
        return self.dir / OUT

    def deferred(self, field_: str) -> Deferred:
        return Deferred.of(self.name, field_)


@dataclass
class Resolving:
    """What a stage's resolver reads: the typed sections of every stage (`cfg.stages`, a copy)
    and the inputs the stage uses (its `needs`)."""

    stages: Any
    inputs: Dict[str, Upstream]

    def input(self, name: str) -> Upstream:
        if name not in self.inputs:
            raise PipelineError(f"resolver reads input {name!r}, which the stage's `needs` does "
                                f"not list for this section (it lists {sorted(self.inputs)})")
        return self.inputs[name]


@runtime_checkable
class Sharded(Protocol):
    """The section of a sharded stage: its shard count (SLURM: pinned to the array size)."""

    shards: int


@dataclass
class Stage:
    name: str
    fn: Callable[[StageContext], StageResult]
    # A dataclass with one `Optional[<upstream Result>] = None` field per stage it can read,
    # named after that stage: the graph's edges. The runner fills it field by field.
    inputs: type = NoInputs
    section: Optional[str] = None  # dotted path under `cfg.stages` (default: the stage name)
    # The input fields the stage uses given its section (default: all); e.g. pretrain with its
    # own `data.sources` needs no filter stage. Only those are loaded and hashed into the key;
    # local runs, SLURM jobs and the plan all follow them.
    needs: Optional[Callable[[Any], Sequence[str]]] = None
    # Sharded stages (SLURM arrays): `shard_fn` for each shard, then `fn` merges; the section
    # is `Sharded` (its `shards`; cluster mode pins it to the array size, `pin_shards`).
    shard_fn: Optional[Callable[[StageContext], None]] = None
    # The section's derived values, from the inputs it uses: `resolve(section, Resolving) ->
    # section`. The same function gives the plan (upstream results not there yet: values fixed
    # before they run, `Deferred` markers for those that need their data) and the section the
    # stage runs with (every input finished: no marker may remain); the manifest records it.
    resolve: Optional[Callable[[Any, Resolving], Any]] = None
    enabled: Callable[[Any], bool] = lambda section: True
    # whether the stage's model weights come from its section's `model.path` alone (no upstream
    # export): checked before a run starts (`random_init_problems`)
    own_weights: Callable[[Any], bool] = lambda section: False

    @property
    def section_path(self) -> str:
        return "stages." + (self.section or self.name)

    @property
    def input_names(self) -> List[str]:
        return [f.name for f in dataclasses.fields(self.inputs)]

    @property
    def functions(self) -> List[Callable[..., Any]]:
        """The functions the stage runs (their code is part of its cache key)."""
        return [self.fn] + ([self.shard_fn] if self.shard_fn is not None else [])


@dataclass
class StageStatus:
    name: str
    status: str  # "cached" | "ran" | "skipped"
    wall_s: float = 0.0
    reason: str = ""


class PipelineError(RuntimeError):
    pass


def random_init_problems(cfg: JZ3Config, stages: Sequence[Stage]) -> List[str]:
    """For each selected stage that builds its model from `model.path` alone: the error
    `build_model` would raise when the stage starts (days in, at paper scale)."""
    from jz3.models.build import random_init_error

    problems = []
    for stage in select_stages(cfg, stages):
        sec = section(cfg, stage)
        if stage.enabled(sec) and stage.own_weights(sec):
            problems.append(random_init_error(sec.model, sec.trainer.init_from,
                                              f"{stage.section_path}.model"))
    return [p for p in problems if p]


def section(cfg: JZ3Config, stage: Stage) -> Any:
    """A copy of the stage's own config section."""
    try:
        return copy.deepcopy(get_dotted(cfg, stage.section_path))
    except (AttributeError, KeyError) as e:
        raise PipelineError(f"stage {stage.name!r}: no config section {stage.section_path}") from e


def used_inputs(stage: Stage, sec: Any) -> List[str]:
    use = list(stage.needs(sec)) if stage.needs else stage.input_names
    bad = [u for u in use if u not in stage.input_names]
    if bad:
        raise PipelineError(f"stage {stage.name!r} needs {bad}, not among its inputs")
    return use


def set_section(cfg: JZ3Config, stage: Stage, value: Any) -> None:
    """Replace the stage's section in `cfg` (cluster mode pins shard counts with it)."""
    parent, _, leaf = stage.section_path.rpartition(".")
    setattr(get_dotted(cfg, parent), leaf, value)


def num_shards(cfg: JZ3Config, stage: Stage) -> int:
    if stage.shard_fn is None:
        return 1
    sec = section(cfg, stage)
    if not isinstance(sec, Sharded):
        raise PipelineError(f"stage {stage.name!r} is sharded, but its section "
                            f"{stage.section_path} has no `shards`")
    return max(1, int(sec.shards))


def stage_dir(cfg: JZ3Config, name: str) -> Path:
    return Path(cfg.run_dir) / name


def select_stages(cfg: JZ3Config, stages: Sequence[Stage]) -> List[Stage]:
    """The stages to run, in graph order: `pipeline.stages` (empty = all enabled ones)."""
    names = [s.name for s in stages]
    for n in list(cfg.pipeline.stages) + list(cfg.pipeline.force):
        if n not in names:
            raise PipelineError(f"unknown stage {n!r} in pipeline.stages/force; known: {names}")
    want = set(cfg.pipeline.stages) or {s.name for s in stages}
    return [s for s in stages if s.name in want and s.enabled(section(cfg, s))]


def _finished_input(cfg: JZ3Config, stage: Stage, dep: str) -> StageOutput:
    d = stage_dir(cfg, dep)
    m = read_manifest(d)
    if m is None:
        raise PipelineError(f"stage {stage.name!r} needs {dep!r}, which has not finished "
                            f"(no {d / MANIFEST}); run it first, or give the stage its input in "
                            f"its config section ({stage.section_path})")
    if m.get("schema") != SCHEMA:
        raise PipelineError(f"{d / MANIFEST}: manifest schema {m.get('schema')!r}, this code "
                            f"reads schema {SCHEMA}; rerun stage {dep!r} "
                            f"(pipeline.force=[{dep}])")
    return StageOutput(dep, d, m)


def section_key(stage: Stage, sec: Any, run_dir: str | Path) -> str:
    """Hash of the stage's config section (as JSON; paths under `run_dir` relative to it, so a
    moved run folder keeps its keys) and of the code the stage runs."""
    rel, _ = relativize(jsonable(sec), run_dir)
    return config_hash(code_hash(stage.functions), stage.section_path, rel)


def _deferred_keys(obj: Any, at: str = "") -> List[str]:
    if isinstance(obj, dict):
        return [k for key, v in obj.items() for k in _deferred_keys(v, f"{at}.{key}" if at else key)]
    if isinstance(obj, list):
        return [k for i, v in enumerate(obj) for k in _deferred_keys(v, f"{at}[{i}]")]
    return [at] if is_deferred(obj) else []


def resolve_section(cfg: JZ3Config, stage: Stage,
                    outputs: Optional[Dict[str, StageOutput]] = None) -> Any:
    """The stage's section with its derived values (`Stage.resolve`).

    `outputs` None (the plan): from what is fixed before the inputs run, `Deferred` markers
    for the values that need their data. With the finished inputs (before the stage runs):
    every value, and a marker left over is an error."""
    raw = section(cfg, stage)
    if stage.resolve is None:
        return raw
    root = Path(os.path.abspath(cfg.run_dir))
    ups = {dep: Upstream(dep, root / dep, outputs[dep].result if outputs is not None else None)
           for dep in used_inputs(stage, raw)}
    sec = stage.resolve(raw, Resolving(copy.deepcopy(cfg.stages), ups))
    left = _deferred_keys(jsonable(sec)) if outputs is not None else []
    if left:
        raise PipelineError(f"stage {stage.name!r}: {', '.join(left)} still deferred although "
                            "its inputs have finished (the resolver must fill them)")
    return sec


def plan_stage(cfg: JZ3Config, stage: Stage) -> tuple[Any, str, Dict[str, StageOutput]]:
    """The stage's resolved config section, its key and its finished inputs."""
    raw = section(cfg, stage)
    inputs = {dep: _finished_input(cfg, stage, dep) for dep in used_inputs(stage, raw)}
    sec = resolve_section(cfg, stage, inputs)
    return sec, section_key(stage, sec, cfg.run_dir), inputs


def _expected_type(hint: Any) -> Any:
    if get_origin(hint) is Union:
        inner = [a for a in get_args(hint) if a is not type(None)]
        return inner[0] if len(inner) == 1 else None
    return hint


def fill_inputs(stage: Stage, outputs: Dict[str, StageOutput]) -> Any:
    """The stage's `Inputs`, each used field the typed result of that finished stage (checked
    against the field's annotation); the other fields None."""
    values = {name: out.result for name, out in outputs.items()}
    module = sys.modules.get(stage.inputs.__module__)
    ns = {**(vars(module) if module else {}), **{type(v).__name__: type(v) for v in values.values()}}
    annotations = {f.name: f.type for f in dataclasses.fields(stage.inputs)}
    for name, v in values.items():
        # one field at a time: the unfilled ones may name types no module has loaded
        probe = type("Field", (), {"__annotations__": {name: annotations[name]}})
        try:
            t = _expected_type(get_type_hints(probe, globalns=ns)[name])
        except NameError as e:
            raise PipelineError(f"stage {stage.name!r}: input {name!r} is a "
                                f"{type(v).__name__}, {stage.inputs.__name__}.{name} expects "
                                f"{annotations[name]}; rerun the upstream stage") from e
        if isinstance(t, type) and not isinstance(v, t):
            raise PipelineError(f"stage {stage.name!r}: input {name!r} is a {type(v).__name__}, "
                                f"{stage.inputs.__name__}.{name} expects {t.__name__}")
    return stage.inputs(**values)


def _input_hashes(inputs: Dict[str, StageOutput]) -> Dict[str, str]:
    return {k: manifest_hash(v.manifest) for k, v in inputs.items()}


def is_current(cfg: JZ3Config, stage: Stage) -> tuple[bool, str]:
    """Whether the stage's manifest matches its current key and inputs (and why not)."""
    d = stage_dir(cfg, stage.name)
    m = read_manifest(d)
    if m is None:
        return False, "no manifest"
    if m.get("schema") != SCHEMA:
        return False, f"manifest schema {m.get('schema')!r}, expected {SCHEMA}"
    try:
        _, key, inputs = plan_stage(cfg, stage)
    except PipelineError as e:
        return False, str(e)
    if m.get("config_hash") != key:
        return False, "config or code changed"
    if m.get("inputs") != _input_hashes(inputs):
        return False, "inputs changed"
    return True, "cached"


def _plan_body(stage: Stage, sec: Any, inputs: Sequence[str]) -> Dict[str, Any]:
    return {"section": stage.section_path, "inputs": list(inputs), "config": jsonable(sec)}


def plan_line(cfg: JZ3Config, stage: Stage) -> str:
    """`[plan] <stage> <json>`: the section the stage will run with (`resolve_section`), the
    upstream stages it reads and the section's path."""
    body = _plan_body(stage, resolve_section(cfg, stage), used_inputs(stage, section(cfg, stage)))
    return f"[plan] {stage.name} {json.dumps(body, sort_keys=True)}"


def plan_lines(cfg: JZ3Config, stages: Sequence[Stage]) -> List[str]:
    """One `plan_line` per selected stage."""
    return [plan_line(cfg, s) for s in select_stages(cfg, stages)]


def _plan_path(cfg: JZ3Config) -> Path:
    return Path(cfg.run_dir) / PLAN_FILE


def read_plan(run_dir: str | Path) -> Dict[str, Dict[str, Any]]:
    """Stage -> its planned body, from `<run_dir>/plan.txt` (empty when there is none)."""
    p = Path(run_dir) / PLAN_FILE
    if not p.exists():
        return {}
    out = {}
    for line in p.read_text(encoding="utf-8").splitlines():
        if line.startswith("[plan] "):
            _, name, body = line.split(" ", 2)
            out[name] = json.loads(body)
    return out


def _write_plan_lines(cfg: JZ3Config, lines: Dict[str, str]) -> Path:
    p = _plan_path(cfg)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p, "".join(f"{x}\n" for x in lines.values()))
    return p


def write_plan(cfg: JZ3Config, stages: Sequence[Stage]) -> Path:
    """The plan of the selected stages as `<run_dir>/plan.txt` (a pipeline run writes it when
    it starts; each stage checks its section against its line before it runs)."""
    return _write_plan_lines(cfg, {s.name: plan_line(cfg, s) for s in select_stages(cfg, stages)})


def add_to_plan(cfg: JZ3Config, stages: Sequence[Stage]) -> Path:
    """Put these stages' plan lines into `<run_dir>/plan.txt`, keeping the other stages' lines
    (a stage launched on its own)."""
    lines = {}
    p = _plan_path(cfg)
    if p.exists():
        lines = {x.split(" ", 2)[1]: x for x in p.read_text(encoding="utf-8").splitlines()
                 if x.startswith("[plan] ")}
    lines.update({s.name: plan_line(cfg, s) for s in stages})
    return _write_plan_lines(cfg, lines)


def plan_differences(planned: Any, actual: Any, at: str = "") -> List[str]:
    """`key: planned X, now Y` for each value of `actual` (JSON) that differs from `planned`;
    a deferred marker in the plan matches any resolved value."""
    if is_deferred(actual):
        return [f"{at}: still deferred ({actual})"]
    if is_deferred(planned):
        return []
    if isinstance(planned, dict) and isinstance(actual, dict):
        out = []
        for k in sorted(set(planned) | set(actual)):
            path = f"{at}.{k}" if at else k
            if k not in planned or k not in actual:
                out.append(f"{path}: only in the {'plan' if k in planned else 'run'}")
            else:
                out += plan_differences(planned[k], actual[k], path)
        return out
    return [] if planned == actual else [f"{at}: planned {planned!r}, now {actual!r}"]


def check_planned(cfg: JZ3Config, stage: Stage, sec: Any, inputs: Sequence[str]) -> None:
    """PipelineError unless the stage is about to run with exactly its line of `plan.txt`
    (deferred values excepted, which must be resolved by now), naming every differing key."""
    p = _plan_path(cfg)
    planned = read_plan(cfg.run_dir).get(stage.name)
    if planned is None:
        raise PipelineError(f"stage {stage.name!r}: no plan line in {p}; the plan is written "
                            "before a stage runs (run_pipeline, write_plan, add_to_plan)")
    actual = json.loads(json.dumps(_plan_body(stage, sec, inputs)))
    diffs = plan_differences(planned, actual)
    if diffs:
        raise PipelineError(f"stage {stage.name!r} would run with a section that differs from "
                            f"its plan ({p}) in: " + "; ".join(diffs))


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


def _ctx(cfg: JZ3Config, stage: Stage, sec: Any, inputs: Dict[str, StageOutput],
         shard: Optional[int] = None, n: Optional[int] = None) -> StageContext:
    return StageContext(stage.name, sec, stage_dir(cfg, stage.name), fill_inputs(stage, inputs),
                        shard=shard, num_shards=n, seed=cfg.seed, run_dir=Path(cfg.run_dir))


def process_rank() -> int:
    """This process's global rank under a multi-process launcher (deepspeed, torchrun, srun)."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return int(os.environ.get("SLURM_PROCID", "0"))
    return 0


def wait_for_attempt(cfg: JZ3Config, stage: Stage, timeout_s: float = 3600.0) -> None:
    """Ranks > 0 of a multi-process stage wait until rank 0 has prepared the stage folder."""
    _, key, _ = plan_stage(cfg, stage)
    attempt = stage_dir(cfg, stage.name) / ATTEMPT
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        try:
            if json.loads(attempt.read_text(encoding="utf-8")).get("config_hash") == key:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{attempt}: rank 0 did not prepare stage {stage.name!r} in {timeout_s} s")


def run_shard(cfg: JZ3Config, stage: Stage, shard: int, num_shards: int) -> None:
    """One shard of a sharded stage (a SLURM array task); the merge job writes the manifest."""
    if stage.shard_fn is None:
        raise PipelineError(f"stage {stage.name!r} is not sharded")
    d = stage_dir(cfg, stage.name)
    sec, key, inputs = plan_stage(cfg, stage)
    check_planned(cfg, stage, sec, list(inputs))
    prepare_dir(d, key, _input_hashes(inputs), fresh=False)
    log.info("stage %s shard %d/%d in %s", stage.name, shard, num_shards, d)
    stage.shard_fn(_ctx(cfg, stage, sec, inputs, shard, num_shards))


# config.json keys of an HF export that say which model a stage actually built and trained
_MODEL_KEYS = ("model_type", "architectures", "hidden_size", "intermediate_size",
               "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size",
               "max_position_embeddings", "rope_theta", "rope_parameters", "rms_norm_eps",
               "sliding_window", "num_local_experts", "num_experts_per_tok", "tie_word_embeddings",
               "dtype", "torch_dtype")
_LR_POINTS = 64  # the manifest keeps at most this many (step, lr) points of a training run


def _read_jsonl_rows(path: Path) -> List[Dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue  # a torn last line of an interrupted run
            if isinstance(r, dict):
                rows.append(r)
    return rows


def used_evidence(result: Any) -> Dict[str, Any]:
    """What a stage actually ran with, read back from the records its typed result names:
    the HF export's `config.json` (`model`: the family and sizes built) and the trainer's
    metrics log (`trainer`: steps, the learning rate at the first / peak / last step, steps
    before the peak, and the lr curve at <= 64 points). Written into the manifest as `used`,
    beside the config section the stage was given, so the two can be compared."""
    used: Dict[str, Any] = {}
    export = getattr(result, "hf_export_dir", None)
    if export and (Path(export) / "config.json").is_file():
        c = json.loads((Path(export) / "config.json").read_text(encoding="utf-8"))
        used["model"] = {k: c[k] for k in _MODEL_KEYS if k in c}
    log_file = getattr(result, "log_file", None)
    if log_file and Path(log_file).is_file():
        by_step = {int(r["step"]): float(r["lr"]) for r in _read_jsonl_rows(Path(log_file))
                   if "step" in r and "lr" in r}  # a resumed run's repeated steps: last wins
        if by_step:
            steps = sorted(by_step)
            lrs = [by_step[t] for t in steps]
            peak = max(lrs)
            every = max(1, -(-len(steps) // _LR_POINTS))
            curve = [[t, by_step[t]] for t in steps[::every]]
            if curve[-1][0] != steps[-1]:
                curve.append([steps[-1], lrs[-1]])
            used["trainer"] = {"steps": steps[-1], "lr_first": lrs[0], "lr_peak": peak,
                               "lr_last": lrs[-1],
                               "steps_before_peak": next(i for i, x in enumerate(lrs) if x == peak),
                               "lr_curve": curve}
    for k in ("steps", "tokens_seen"):
        if isinstance(getattr(result, k, None), int):
            used.setdefault("trainer", {})[k] = getattr(result, k)
    return used


def _manifest_extra(res: StageResult, sec: Any) -> Dict[str, Any]:
    extra: Dict[str, Any] = {"metrics": res.metrics, "config": jsonable(sec)}
    used = used_evidence(res.result) if res.result is not None else {}
    if used:
        extra["used"] = used
    if res.result is not None:
        extra["result"] = jsonable(res.result)
        extra["result_type"] = _type_name(type(res.result))
    warnings = list(res.warnings) + list(getattr(res.result, "warnings", None) or [])
    if warnings:
        extra["warnings"] = warnings
    return extra


def run_stage(cfg: JZ3Config, stage: Stage, force: bool = False,
              run_shards: bool = True) -> StageStatus:
    """Run one stage unless cached. `run_shards=False`: shards ran as array tasks; only merge.

    Under a multi-process launcher (`deepspeed`, `srun`: RANK > 0) only rank 0 goes through the
    cache check, folder and manifest; the other ranks join the (collective) stage function once
    rank 0 has prepared the folder."""
    d = stage_dir(cfg, stage.name)
    current, why = is_current(cfg, stage)
    if current and not force:
        log.info("stage %-14s cached (%s)", stage.name, d / MANIFEST)
        return StageStatus(stage.name, "cached", reason="manifest matches")
    if force:
        why = "forced"
    if process_rank() > 0:
        wait_for_attempt(cfg, stage)
        sec, _, inputs = plan_stage(cfg, stage)
        stage.fn(_ctx(cfg, stage, sec, inputs, n=num_shards(cfg, stage)))
        return StageStatus(stage.name, "ran", reason=why)
    sec, key, inputs = plan_stage(cfg, stage)
    check_planned(cfg, stage, sec, list(inputs))
    hashes = _input_hashes(inputs)
    old = read_manifest(d)
    if old is not None:
        (d / MANIFEST).unlink()  # from here on the stage is incomplete
    prepare_dir(d, key, hashes, fresh=force or (old is not None and run_shards))
    log.info("stage %-14s running (%s) in %s", stage.name, why, d)
    t0 = time.time()
    n = num_shards(cfg, stage)
    try:
        if stage.shard_fn is not None and run_shards:
            for shard in range(n):
                stage.shard_fn(_ctx(cfg, stage, sec, inputs, shard, n))
        res = stage.fn(_ctx(cfg, stage, sec, inputs, n=n))
    except StageFailed as e:
        log.error("stage %-14s failed (no manifest written; a rerun retries): %s", stage.name, e)
        raise
    wall = time.time() - t0
    write_manifest(d, stage.name, key, hashes, counts=res.counts, outputs=res.outputs,
                   wall_s=round(wall, 3), extra=_manifest_extra(res, sec))
    log.info("stage %-14s done in %.1f s: %s", stage.name, wall, res.counts)
    return StageStatus(stage.name, "ran", wall_s=wall, reason=why)


def run_pipeline(cfg: JZ3Config, stages: Sequence[Stage],
                 on_done: Optional[Callable[[StageStatus], None]] = None) -> List[StageStatus]:
    """Write the plan, then run the selected stages in order; cached ones are skipped.
    Returns one status each."""
    log.info("plan written to %s", write_plan(cfg, stages))
    out: List[StageStatus] = []
    force = set(cfg.pipeline.force)
    for stage in select_stages(cfg, stages):
        st = run_stage(cfg, stage, force=stage.name in force)
        out.append(st)
        if on_done:
            on_done(st)
    return out
