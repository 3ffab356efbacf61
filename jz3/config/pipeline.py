"""Pipeline config: which stages run, what is forced, the plan view, the report.

Stage settings live in `stages.<stage>` (jz3.config.stages); this section only steers the runner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class PipelineConfig:
    stages: List[str] = field(default_factory=list)  # empty = all enabled stages in order
    force: List[str] = field(default_factory=list)  # stages to re-run even if cached
    plan: bool = False  # print `[plan] <stage> <json>` per stage and exit; runs nothing
    # Sharded stages run alone (launch/synthesize.py, SLURM arrays): this shard only, then exit
    # (None: SLURM_ARRAY_TASK_ID inside an array job, else every shard + merge).
    shard: Optional[int] = None
    merge_only: bool = False  # sharded stage: every shard ran elsewhere; verify + merge only
    report: str = "${run_dir}/report.md"
