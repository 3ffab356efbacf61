"""Where stages run: locally or on SLURM (submitit)."""

from __future__ import annotations

from dataclasses import dataclass, field

from jz3.config.enums import LauncherKind


@dataclass
class StageResources:
    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int = 2
    mem_gb: int = 16
    timeout_min: int = 60
    array: int = 1  # array size for sharded stages


@dataclass
class LauncherConfig:
    kind: LauncherKind = LauncherKind.local
    partition: str = ""
    account: str = ""
    dry_run: bool = False
    log_dir: str = "${run_dir}/slurm"
    resources: dict = field(default_factory=dict)  # stage name -> StageResources fields
