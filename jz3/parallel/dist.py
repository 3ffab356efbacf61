"""Process-group setup: NCCL on GPUs, gloo on CPU ranks; works under `deepspeed`, `torchrun`,
`srun` (SLURM variables) or as one plain process."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env_from_slurm() -> None:
    """Map `srun` task variables onto the torch.distributed ones when a launcher did not."""
    if "RANK" in os.environ or "SLURM_PROCID" not in os.environ:
        return
    if int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return
    os.environ["RANK"] = os.environ["SLURM_PROCID"]
    os.environ["WORLD_SIZE"] = os.environ["SLURM_NTASKS"]
    os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", "0")


def backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_distributed(use_deepspeed: bool) -> DistInfo:
    """Initialise the default process group (once); a single process gets a world of one.

    A plain-torch single process leaves `os.environ` alone (it is often called in-process by the
    pipeline or tests); DeepSpeed needs the rendezvous variables even for one rank."""
    _env_from_slurm()
    env = os.environ
    world = int(env.get("WORLD_SIZE", "1"))
    info = DistInfo(int(env.get("RANK", "0")), world, int(env.get("LOCAL_RANK", "0")))
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    if dist.is_initialized() or not (use_deepspeed or world > 1):
        return info
    if "MASTER_PORT" not in env:
        if world > 1:
            raise RuntimeError("WORLD_SIZE > 1 but MASTER_PORT is unset (launch with deepspeed/torchrun/srun)")
        env["MASTER_PORT"] = str(_free_port())
    for key, default in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1")):
        env.setdefault(key, default)
    if use_deepspeed:
        import deepspeed

        deepspeed.init_distributed(dist_backend=backend(), auto_mpi_discovery=False)
        unlink_deepspeed_shm(info)
    else:
        dist.init_process_group(backend=backend())
    log.info("rank %d/%d: process group up (%s)", info.rank, info.world_size, backend())
    return info


SHM_DIR = Path("/dev/shm")
DS_SHM_PREFIX = "deepspeed_allreduce_buffer"  # DeepSpeed's SHM_BUFFER_NAME (cpu/comm/shm.cpp)


def deepspeed_shm_buffer(rank: int) -> Path:
    """The shared-memory buffer DeepSpeed's CPU all-reduce (`ShareMemCommBuilder`) creates for
    `rank` when every rank is on one host: named after uid, MASTER_ADDR and MASTER_PORT."""
    env = os.environ
    return SHM_DIR / (f"{DS_SHM_PREFIX}_{os.getuid()}_{env.get('MASTER_ADDR', '')}_"
                      f"{env.get('MASTER_PORT', '')}_{rank}")


def unlink_deepspeed_shm(info: DistInfo) -> None:
    """Remove this rank's DeepSpeed shared-memory name once every rank has mapped every buffer.

    DeepSpeed never unlinks these 66 MB buffers, so each CPU run (and every killed one) used
    to leave two in /dev/shm, held in RAM until reboot. Mappings outlive the name: the memory
    goes when the last rank exits, however it exits. `shm_initialize` returns only after a
    rank mapped all the others' buffers, so after the barrier no rank still needs a name."""
    barrier()  # every rank, buffer or not (GPU runs and multi-host runs have none)
    path = deepspeed_shm_buffer(info.rank)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        log.debug("unlinked %s (mapped by every rank)", path)


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (a copy; identity for one process)."""
    x = x.detach().clone()
    if is_dist() and dist.get_world_size() > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def all_reduce_sum_async(x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """Start a sum over ranks; the returned function waits and gives the result (overlap the
    collective with compute, e.g. the first forward of a step)."""
    x = x.detach().clone()
    if not (is_dist() and dist.get_world_size() > 1):
        return lambda: x
    work = dist.all_reduce(x, op=dist.ReduceOp.SUM, async_op=True)

    def wait() -> torch.Tensor:
        work.wait()
        return x

    return wait
