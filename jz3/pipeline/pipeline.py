"""Entry points behind `launch/*.py`: the whole pipeline (locally, then a report; or submitted
to SLURM), its plan, or one stage through the same runner."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, Dict

from jz3.config.enums import LauncherKind
from jz3.config.root import JZ3Config

log = logging.getLogger("jz3.pipeline")


def run(cfg: JZ3Config) -> Dict[str, Any]:
    """Run (or submit) the pipeline; prints a JSON summary as the last stdout line."""
    from jz3.config.validate import check_stages
    from jz3.pipeline.report import write_report
    from jz3.pipeline.runner import (
        plan_lines,
        random_init_problems,
        run_pipeline,
        section,
        write_plan,
    )
    from jz3.pipeline.stages import STAGE_NAMES, STAGES

    problems = random_init_problems(cfg, STAGES)
    for p in problems:  # a plan or a dry run shows them; a run stops before its first stage
        print(f"warning: {p}", file=sys.stderr, flush=True)
    if cfg.pipeline.plan:
        lines = plan_lines(cfg, STAGES)
        for line in lines:
            print(line, flush=True)
        return {"plan": lines}
    if problems and not (cfg.launcher.kind == LauncherKind.slurm and cfg.launcher.dry_run):
        raise ValueError("; ".join(problems))
    if not (cfg.launcher.kind == LauncherKind.slurm and cfg.launcher.dry_run):
        check_stages(cfg, [s.name for s in STAGES if s.enabled(section(cfg, s))])
    if cfg.launcher.kind == LauncherKind.slurm:
        from jz3.pipeline.slurm import submit_pipeline

        jobs = submit_pipeline(cfg)
        return {"submitted": [j.name for j in jobs], "dry_run": cfg.launcher.dry_run}
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("WANDB_MODE", "offline")
    t0 = time.time()
    log.info("plan written to %s", write_plan(cfg, STAGES))
    try:
        statuses = run_pipeline(cfg, STAGES)
    finally:  # a report of whatever finished, also when a stage failed
        disabled = [s.name for s in STAGES if not s.enabled(section(cfg, s))]
        report = write_report(cfg.run_dir, STAGE_NAMES, cfg.pipeline.report,
                              title=f"jz3 run report: {cfg.exp_name}", disabled=disabled)
    summary = {"run_dir": cfg.run_dir, "report": str(report), "wall_s": round(time.time() - t0, 1),
               "stages": {s.name: s.status for s in statuses}}
    print(json.dumps(summary), flush=True)
    return summary


def run_single(cfg: JZ3Config, name: str) -> Any:
    """Run one stage (`launch/<stage>.py`) through the runner: the same code path as in the
    pipeline. Its inputs come from its config section (e.g. `stages.pretrain.data.sources`)
    or from the finished upstream stages in `run_dir`. Returns the stage's typed result.

    A sharded stage with `pipeline.shard` set (or inside a SLURM array) runs that shard only;
    `pipeline.merge_only=true` verifies and merges shards that ran elsewhere."""
    from jz3.data.records import shard_from_env
    from jz3.pipeline.runner import (
        plan_lines,
        read_manifest,
        run_shard,
        run_stage,
        stage_dir,
    )
    from jz3.pipeline.stages import BY_NAME

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    stage = BY_NAME[name]
    if cfg.pipeline.plan:
        for line in plan_lines(cfg, [stage]):
            print(line, flush=True)
        return None
    in_array = "SLURM_ARRAY_TASK_ID" in os.environ
    if stage.shard_fn is not None and (cfg.pipeline.shard is not None or in_array) \
            and not cfg.pipeline.merge_only:
        from jz3.pipeline.runner import num_shards

        shard, n = shard_from_env(cfg.pipeline.shard, num_shards(cfg, stage))
        run_shard(cfg, stage, shard, n)
        return {"shard": shard, "num_shards": n}
    from jz3.train.entry import TrainingPreempted

    try:
        st = run_stage(cfg, stage, force=name in cfg.pipeline.force,
                       run_shards=not cfg.pipeline.merge_only)
    except TrainingPreempted as e:  # a clean exit: the batch script requeues, the rerun resumes
        log.warning("stage %s: %s", name, e)
        return {"stage": name, "status": "preempted", "reason": str(e)}
    m = read_manifest(stage_dir(cfg, name)) or {}
    log.info("stage %s: %s (%s)", name, st.status, st.reason)
    return {"stage": name, "status": st.status, "counts": m.get("counts", {}),
            "result": m.get("result")}
