"""Entry points behind `launch/*.py`: the whole pipeline (locally, then a report; or submitted
to SLURM), its plan, or one stage through the same runner.

Every command is `command(...)`: Hydra composes the typed config, the stages run, a JSON summary
is the last stdout line. A stage that failed (`jz3.errors.StageFailed`) ends the command with
exit status 1 and its cause as the last line on stderr; nothing of it is cached.
Only what a stage runs is imported (the stage functions import their domain modules), so a
teacher-only command starts without torch.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, Callable, Dict, Optional

from jz3.config.enums import LauncherKind
from jz3.config.root import JZ3Config
from jz3.errors import StageFailed

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
    )
    from jz3.pipeline.stages import STAGE_NAMES, STAGES, recipe_problems

    problems = random_init_problems(cfg, STAGES) + recipe_problems(cfg)
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
    try:  # the runner writes the plan first (`plan.txt`)
        statuses = run_pipeline(cfg, STAGES)
    finally:  # a report of whatever finished, also when a stage failed
        disabled = [s.name for s in STAGES if not s.enabled(section(cfg, s))]
        report = write_report(cfg.run_dir, STAGE_NAMES, cfg.pipeline.report,
                              title=f"jz3 run report: {cfg.exp_name}", disabled=disabled,
                              strict=sys.exc_info()[1] is None)  # never mask a stage's error
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
        add_to_plan,
        plan_lines,
        process_rank,
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
    if process_rank() == 0:  # the stage's plan line, which the runner checks its section against
        add_to_plan(cfg, [stage])
    in_array = "SLURM_ARRAY_TASK_ID" in os.environ
    if stage.shard_fn is not None and (cfg.pipeline.shard is not None or in_array) \
            and not cfg.pipeline.merge_only:
        from jz3.pipeline.runner import num_shards

        shard, n = shard_from_env(cfg.pipeline.shard, num_shards(cfg, stage))
        run_shard(cfg, stage, shard, n)
        return {"shard": shard, "num_shards": n}
    try:
        st = run_stage(cfg, stage, force=name in cfg.pipeline.force,
                       run_shards=not cfg.pipeline.merge_only)
    except Exception as e:
        if not _preempted(e):
            raise
        # a clean exit: the batch script requeues, the rerun resumes
        log.warning("stage %s: %s", name, e)
        return {"stage": name, "status": "preempted", "reason": str(e)}
    m = read_manifest(stage_dir(cfg, name)) or {}
    log.info("stage %s: %s (%s)", name, st.status, st.reason)
    return {"stage": name, "status": st.status, "counts": m.get("counts", {}),
            "result": m.get("result")}


def _preempted(e: BaseException) -> bool:
    """Whether `e` is the trainer's preemption signal (only a stage that trains raises it, so
    the trainer module is imported already if it can be)."""
    train = sys.modules.get("jz3.train.entry")
    return train is not None and isinstance(e, train.TrainingPreempted)


def _fail(e: StageFailed) -> None:
    logging.shutdown()  # flush every log line before the cause
    sys.stdout.flush()
    print(str(e), file=sys.stderr, flush=True)
    sys.exit(1)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def command(*names: str, prepare: Optional[Callable[[JZ3Config], None]] = None,
            show: Optional[Callable[[Dict[str, Any]], Any]] = None) -> Callable[[], Any]:
    """The `main` of a `launch/<stage>.py` command: runs the stages `names` in order through
    `run_single` (no names: the whole pipeline, `run`). `prepare(cfg)` runs first (not for a
    plan); `show(summary)` turns the last stage's summary into what is printed (JSON) last."""
    from jz3.config import hydra_entry

    def main(cfg: JZ3Config) -> None:
        if not cfg.pipeline.plan:
            _logging()
        try:
            if not names:
                run(cfg)
                return
            if not cfg.pipeline.plan:
                from jz3.config.validate import check_stages

                check_stages(cfg, list(names))  # before the first stage runs
            if prepare is not None and not cfg.pipeline.plan:
                prepare(cfg)
            out = None
            for name in names:
                out = run_single(cfg, name)
        except StageFailed as e:
            _fail(e)
        if out is not None:  # None: pipeline.plan=true printed the plan
            print(json.dumps(show(out) if show else out, default=str), flush=True)

    main.__doc__ = f"launch the stages {', '.join(names) or 'of the whole pipeline'}"
    return hydra_entry(main)
