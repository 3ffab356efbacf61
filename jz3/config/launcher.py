"""Where stages run: locally or on SLURM (submitit), with typed per-stage resources."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List

from jz3.config.enums import LauncherKind


@dataclass
class StageResources:
    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int = 1
    cpus_per_task: int = 2
    mem_gb: int = 16
    timeout_min: int = 60
    array: int = 1  # array size for sharded stages (synthesize, influence)
    array_parallelism: int = 256  # at most this many array tasks at once


@dataclass
class LauncherConfig:
    kind: LauncherKind = LauncherKind.local
    partition: str = ""
    account: str = ""
    qos: str = ""
    dry_run: bool = False  # print every job that would be submitted, submit nothing
    log_dir: str = "${run_dir}/slurm"
    setup: List[str] = field(default_factory=list)  # shell lines run before each job
    default: StageResources = field(default_factory=StageResources)
    resources: Dict[str, StageResources] = field(default_factory=dict)  # stage -> resources

    def for_stage(self, stage: str) -> StageResources:
        return self.resources.get(stage, self.default)
