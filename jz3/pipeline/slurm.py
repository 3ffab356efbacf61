"""Cluster mode: every stage becomes a submitit SLURM job with its own resources.

Jobs are chained with `afterok` dependencies in graph order; sharded stages become an array job
(`launcher.resources[stage].array` tasks, one shard each) plus a merge job that writes the
manifest. Each job re-enters the same runner (`run_stage` / `run_shard`), so a stage whose
manifest already matches is a no-op and a failed job can simply be resubmitted.
`launcher.dry_run=true` prints every job that would be submitted and submits nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

from jz3.config.root import JZ3Config
from jz3.pipeline.runner import (
    PipelineError,
    Sharded,
    Stage,
    is_current,
    plan_lines,
    run_shard,
    run_stage,
    section,
    select_stages,
    set_section,
    used_inputs,
    write_plan,
)

log = logging.getLogger("jz3.pipeline.slurm")


@dataclass
class JobSpec:
    """One job (or array) as it is, or would be, submitted."""

    name: str
    stage: str
    kind: str  # "stage" | "array" | "merge"
    params: Dict[str, Any]  # submitit executor parameters
    after: List[str] = field(default_factory=list)  # names of the jobs it waits for
    array: int = 1
    job_id: Optional[str] = None

    def line(self) -> str:
        after = ",".join(self.after) or "-"
        return (f"[dry-run] {self.name} kind={self.kind} array={self.array} after={after} "
                f"params={json.dumps(self.params, sort_keys=True)}")


def _export_dist_env() -> None:
    """Multi-task jobs: RANK/WORLD_SIZE/MASTER_ADDR/PORT from SLURM for torch.distributed."""
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def stage_job(cfg: JZ3Config, stage: Stage, run_shards: bool = True) -> str:
    """Body of a stage (or merge) job on the cluster; every task of a multi-task job runs it.

    Rank 0 goes through the runner (cache check, folder, manifest); other ranks join the stage
    function once rank 0 has prepared the folder (training stages are collective)."""
    _export_dist_env()
    return run_stage(cfg, stage, run_shards=run_shards).status


def shard_job(cfg: JZ3Config, stage: Stage, shard: int, num_shards: int) -> int:
    """Body of one array task."""
    run_shard(cfg, stage, shard, num_shards)
    return shard


def _params(cfg: JZ3Config, stage: str, array: bool) -> Dict[str, Any]:
    r = cfg.launcher.for_stage(stage)
    p: Dict[str, Any] = {
        "name": f"jz3-{cfg.exp_name}-{stage}",
        "nodes": 1 if array else r.nodes,
        "tasks_per_node": 1 if array else r.tasks_per_node,
        "gpus_per_node": r.gpus_per_node,
        "cpus_per_task": r.cpus_per_task,
        "mem_gb": r.mem_gb,
        "timeout_min": r.timeout_min,
    }
    if cfg.launcher.partition:
        p["slurm_partition"] = cfg.launcher.partition
    if cfg.launcher.account:
        p["slurm_account"] = cfg.launcher.account
    if cfg.launcher.qos:
        p["slurm_qos"] = cfg.launcher.qos
    if cfg.launcher.setup:
        p["slurm_setup"] = list(cfg.launcher.setup)
    if array:
        p["slurm_array_parallelism"] = r.array_parallelism
    return p


def pin_shards(cfg: JZ3Config, stages: Sequence[Stage]) -> JZ3Config:
    """A copy of `cfg` whose sharded stages' shard counts (`Sharded.shards`) equal their SLURM
    array sizes: the plan, the jobs and the manifests all see the pinned count."""
    c = copy.deepcopy(cfg)
    for s in stages:
        if s.shard_fn is not None:
            sec = section(c, s)
            if not isinstance(sec, Sharded):
                raise PipelineError(f"stage {s.name!r} is sharded, but its section "
                                    f"{s.section_path} has no `shards`")
            set_section(c, s, dataclasses.replace(sec, shards=c.launcher.for_stage(s.name).array))
    return c


def plan_jobs(cfg: JZ3Config, stages: Sequence[Stage]) -> List[JobSpec]:
    """The jobs for every selected stage not already finished, with their dependencies.

    `cfg` must already be `pin_shards`-ed (as `submit_pipeline` does), so that the cache keys
    seen here are those the jobs will compute."""
    jobs: List[JobSpec] = []
    last: Dict[str, str] = {}  # stage -> name of the job that finishes it
    for s in select_stages(cfg, stages):
        deps = [last[i] for i in used_inputs(s, section(cfg, s)) if i in last]
        if not deps and s.name not in cfg.pipeline.force and is_current(cfg, s)[0]:
            continue
        n = cfg.launcher.for_stage(s.name).array if s.shard_fn is not None else 1
        if s.shard_fn is not None:
            arr = JobSpec(f"{s.name}[0-{n - 1}]", s.name, "array", _params(cfg, s.name, True),
                          deps, array=n)
            merge = JobSpec(f"{s.name}:merge", s.name, "merge", _params(cfg, s.name, False)
                            | {"nodes": 1, "tasks_per_node": 1, "gpus_per_node": 0},
                            [arr.name])
            jobs += [arr, merge]
            last[s.name] = merge.name
        else:
            job = JobSpec(s.name, s.name, "stage", _params(cfg, s.name, False), deps)
            jobs.append(job)
            last[s.name] = job.name
    return jobs


def submit_jobs(cfg: JZ3Config, jobs: List[JobSpec], stages: Sequence[Stage],
                executor_factory: Optional[Callable[[str], Any]] = None) -> List[JobSpec]:
    """Submit the planned jobs with submitit; fills `job_id`. Prints the plan and the jobs when
    dry_run; otherwise writes the plan (`plan.txt`), which every job checks its section against."""
    if cfg.launcher.dry_run:
        for line in plan_lines(cfg, stages):
            print(line, flush=True)
        for j in jobs:
            print(j.line(), flush=True)
        return jobs
    import submitit

    write_plan(cfg, stages)

    folder = cfg.launcher.log_dir
    make = executor_factory or (lambda f: submitit.AutoExecutor(folder=f, cluster="slurm"))
    ids: Dict[str, str] = {}
    by_name = {s.name: s for s in stages}
    for j in jobs:
        st = by_name[j.stage]
        ex = make(folder)
        extra = {}
        dep = [ids[a] for a in j.after]
        if dep:
            extra["slurm_additional_parameters"] = {"dependency": "afterok:" + ":".join(dep)}
        ex.update_parameters(**j.params, **extra)
        if j.kind == "array":
            subs = ex.map_array(shard_job, [cfg] * j.array, [st] * j.array,
                                list(range(j.array)), [j.array] * j.array)
            j.job_id = str(subs[0].job_id).split("_")[0]
        else:
            sub = ex.submit(stage_job, cfg, st, j.kind != "merge")
            j.job_id = str(sub.job_id)
        ids[j.name] = j.job_id
        log.info("submitted %s as %s", j.name, j.job_id)
    return jobs


def submit_pipeline(cfg: JZ3Config, stages: Optional[Sequence[Stage]] = None) -> List[JobSpec]:
    from jz3.pipeline.stages import STAGES

    stages = list(stages if stages is not None else STAGES)
    cfg = pin_shards(cfg, stages)
    jobs = plan_jobs(cfg, stages)
    submit_jobs(cfg, jobs, stages)
    summary = [asdict(j) for j in jobs]
    print(json.dumps({"jobs": len(summary), "dry_run": cfg.launcher.dry_run,
                      "stages": [j["name"] for j in summary]}))
    return jobs
