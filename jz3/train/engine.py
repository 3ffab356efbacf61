"""Two interchangeable engines behind one protocol (`Engine`): plain torch and DeepSpeed.

    engine.forward(**kw) -> model output
    engine.backward(loss)            # loss already normalised by the GLOBAL target-token count
    engine.micro_step(last: bool)    # after every micro-batch; steps optimizer+scheduler on `last`
    engine.grad_norm / engine.lr
    engine.save(ckpt_dir) / engine.load(ckpt_dir)   # collective under DeepSpeed
    engine.full_state_dict()         # gathered weights on rank 0 (None elsewhere), collective
"""

from __future__ import annotations

import logging
import math
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Optional, Protocol, runtime_checkable

import torch

from jz3.config.trainer import TrainerConfig
from jz3.parallel.dist import DistInfo
from jz3.train.schedules import build_scheduler, lr_lambda

log = logging.getLogger(__name__)


class EngineKind(str, Enum):
    torch = "torch"
    deepspeed = "deepspeed"


@runtime_checkable
class Engine(Protocol):
    """What the trainer drives; `TorchEngine` and `DeepSpeedEngine` implement it."""

    kind: EngineKind
    module: torch.nn.Module  # the (unwrapped) model
    optimizer: Any
    device: torch.device
    grad_norm: float  # of the last optimizer step
    data_parallel_rank: int
    data_parallel_world: int
    loss_scale_for_backward: float

    @property
    def lr(self) -> float: ...

    def forward(self, **kw: Any) -> Any: ...

    def backward(self, loss: torch.Tensor) -> None: ...

    def micro_step(self, last: bool) -> None:
        """After every micro-batch; steps optimizer and scheduler when `last`."""

    def save(self, ckpt_dir: Path) -> None: ...

    def load(self, ckpt_dir: Path) -> None: ...

    def full_state_dict(self) -> Optional[Dict[str, torch.Tensor]]:
        """Gathered weights on rank 0, None elsewhere (collective under DeepSpeed)."""


def param_groups(model: torch.nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    """No weight decay on norms and biases (1-D tensors)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, cfg: TrainerConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr,
                             betas=(cfg.betas[0], cfg.betas[1]), eps=cfg.eps)


class TorchEngine:
    """Single-process plain-torch engine (CPU or one GPU)."""

    kind = EngineKind.torch

    def __init__(self, model: torch.nn.Module, cfg: TrainerConfig, total_steps: int,
                 device: torch.device, autocast_dtype: Optional[torch.dtype]) -> None:
        self.module = model.to(device)
        self.device = device
        self.cfg = cfg
        self.optimizer = make_optimizer(self.module, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg, total_steps)
        self.autocast_dtype = autocast_dtype
        self.grad_norm = 0.0
        self.data_parallel_rank, self.data_parallel_world = 0, 1
        self.loss_scale_for_backward = 1.0

    def forward(self, **kw: Any) -> Any:
        if self.autocast_dtype is not None:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                return self.module(**kw)
        return self.module(**kw)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def micro_step(self, last: bool) -> None:
        if not last:
            return
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf)
        self.grad_norm = float(norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def save(self, ckpt_dir: Path) -> None:
        torch.save({"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict()}, ckpt_dir / "engine_state.pt")

    def load(self, ckpt_dir: Path) -> None:
        path = ckpt_dir / "engine_state.pt"
        if not path.exists():
            raise FileNotFoundError(f"{path}: not a plain-torch checkpoint (saved with deepspeed.enabled=true?)")
        st = torch.load(path, map_location=self.device, weights_only=False)
        self.module.load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])

    def full_state_dict(self) -> Optional[Dict[str, torch.Tensor]]:
        return {k: v.detach().cpu() for k, v in self.module.state_dict().items()}


class DeepSpeedEngine:
    """DeepSpeed ZeRO (1-3, optional offload) with optional AutoTP tensor parallelism."""

    kind = EngineKind.deepspeed

    def __init__(self, model: torch.nn.Module, cfg: TrainerConfig, total_steps: int,
                 ds_config: Dict[str, Any], dist_info: DistInfo) -> None:
        import deepspeed
        from deepspeed.utils import groups

        self.cfg = cfg
        optimizer = make_optimizer(model, cfg)
        schedule = lr_lambda(cfg, total_steps)
        self.ds, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, config=ds_config,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, schedule),
        )
        self.module = self.ds.module
        self.device = self.ds.device
        self.tp_size = int(ds_config.get("tensor_parallel", {}).get("autotp_size", 1))
        if self.tp_size > 1:
            self.data_parallel_rank = groups.get_data_parallel_rank()
            self.data_parallel_world = groups.get_data_parallel_world_size()
        else:
            self.data_parallel_rank, self.data_parallel_world = dist_info.rank, dist_info.world_size
        self.grad_accum = int(ds_config["gradient_accumulation_steps"])
        # DeepSpeed divides by grad-accum steps and averages gradients over data-parallel ranks;
        # undo both so that gradients are those of (sum of token losses / global target tokens).
        self.loss_scale_for_backward = float(self.grad_accum * self.data_parallel_world)
        self.grad_norm = 0.0
        self._lr = self.lr

    def forward(self, **kw: Any) -> Any:
        return self.ds(**kw)

    def backward(self, loss: torch.Tensor) -> None:
        self.ds.backward(loss * self.loss_scale_for_backward)

    @property
    def lr(self) -> float:
        return float(self.ds.get_lr()[0])

    def micro_step(self, last: bool) -> None:
        if last != self.ds.is_gradient_accumulation_boundary():
            raise RuntimeError("jz3 and DeepSpeed disagree on the gradient-accumulation boundary")
        self.ds.step()
        if last:
            norm = self.ds.get_global_grad_norm()
            self.grad_norm = float(norm) if norm is not None else float("nan")

    def save(self, ckpt_dir: Path) -> None:
        self.ds.save_checkpoint(str(ckpt_dir.parent), tag=ckpt_dir.name, save_latest=False)

    def load(self, ckpt_dir: Path) -> None:
        path, _ = self.ds.load_checkpoint(str(ckpt_dir.parent), tag=ckpt_dir.name,
                                          load_optimizer_states=True, load_lr_scheduler_states=True)
        if path is None:
            raise FileNotFoundError(f"{ckpt_dir}: DeepSpeed could not load this checkpoint "
                                    "(saved with deepspeed.enabled=false?)")

    def full_state_dict(self) -> Optional[Dict[str, torch.Tensor]]:
        """Gathered 16-bit (training dtype) weights on rank 0; call on all ranks."""
        if self.ds.zero_optimization_partition_weights() or self.tp_size > 1:
            sd = self.ds._consolidated_16bit_state_dict()
        else:
            sd = self.module.state_dict() if self.ds.global_rank == 0 else None
        if sd is None or self.ds.global_rank != 0:
            return None
        return {k: v.detach().cpu() for k, v in sd.items()}
