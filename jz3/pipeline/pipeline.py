"""Entry point behind `launch/pipeline.py`: run locally (then report) or submit to SLURM."""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Dict

from jz3.config.enums import LauncherKind
from jz3.config.root import JZ3Config

log = logging.getLogger("jz3.pipeline")


def run(cfg: JZ3Config) -> Dict[str, Any]:
    """Run (or submit) the pipeline; prints a JSON summary as the last stdout line."""
    from jz3.pipeline.report import write_report
    from jz3.pipeline.runner import run_pipeline
    from jz3.pipeline.stages import STAGE_NAMES, STAGES

    if cfg.launcher.kind == LauncherKind.slurm:
        from jz3.pipeline.slurm import submit_pipeline

        jobs = submit_pipeline(cfg)
        return {"submitted": [j.name for j in jobs], "dry_run": cfg.launcher.dry_run}
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("WANDB_MODE", "offline")
    t0 = time.time()
    try:
        statuses = run_pipeline(cfg, STAGES)
    finally:  # a report of whatever finished, also when a stage failed
        report = write_report(cfg.run_dir, STAGE_NAMES, cfg.pipeline.report,
                              title=f"jz3 run report: {cfg.exp_name}")
    summary = {"run_dir": cfg.run_dir, "report": str(report), "wall_s": round(time.time() - t0, 1),
               "stages": {s.name: s.status for s in statuses}}
    print(json.dumps(summary), flush=True)
    return summary
