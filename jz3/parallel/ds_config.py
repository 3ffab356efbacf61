"""Turn the typed `DeepSpeedConfig` + `TrainerConfig` into a DeepSpeed JSON config dict.

Batch layout: global batch = micro batch x gradient accumulation x data-parallel ranks, where
data-parallel ranks = world size / `autotp_size` (AutoTP ranks of one group see the same data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Tuple

from jz3.config.deepspeed import DeepSpeedConfig
from jz3.config.enums import Precision
from jz3.config.trainer import TrainerConfig


@dataclass(frozen=True)
class BatchLayout:
    global_batch: int
    micro_batch: int
    grad_accum: int
    dp_world: int


def batch_layout(trainer: TrainerConfig, world_size: int, tp_size: int = 1) -> BatchLayout:
    """Derive gradient accumulation; errors name the offending fields."""
    if world_size % tp_size:
        raise ValueError(f"deepspeed.autotp_size={tp_size} does not divide world size {world_size}")
    dp = world_size // tp_size
    per_step = trainer.micro_batch_size * dp
    if trainer.global_batch_size % per_step:
        raise ValueError(
            f"trainer.global_batch_size={trainer.global_batch_size} is not a multiple of "
            f"trainer.micro_batch_size={trainer.micro_batch_size} x data-parallel ranks={dp}"
        )
    return BatchLayout(trainer.global_batch_size, trainer.micro_batch_size,
                       trainer.global_batch_size // per_step, dp)


def bucket_sizes(ds: DeepSpeedConfig, hidden_size: int) -> Tuple[int, int, int]:
    """(reduce bucket, stage-3 prefetch bucket, stage-3 persistence threshold) in elements: the
    configured values, or for each one left at None what HF Trainer fills in for the release's
    "auto" (`transformers.integrations.deepspeed`): h^2, 0.9 h^2 and 10 h."""
    h = hidden_size
    return (h * h if ds.reduce_bucket_size is None else ds.reduce_bucket_size,
            int(0.9 * h * h) if ds.stage3_prefetch_bucket_size is None
            else ds.stage3_prefetch_bucket_size,
            10 * h if ds.stage3_param_persistence_threshold is None
            else ds.stage3_param_persistence_threshold)


def build_ds_config(ds: DeepSpeedConfig, trainer: TrainerConfig, world_size: int,
                    hidden_size: int) -> Dict[str, Any]:
    """The DeepSpeed config dict (no "auto" values: HfDeepSpeedConfig needs concrete ones;
    bucket sizes left unset follow the model's `hidden_size`, see `bucket_sizes`)."""
    if ds.autotp_size > 1 and ds.zero_stage > 2:
        raise ValueError("deepspeed.autotp_size > 1 needs deepspeed.zero_stage <= 2 (DeepSpeed AutoTP)")
    lay = batch_layout(trainer, world_size, ds.autotp_size)
    reduce_bucket, prefetch_bucket, persistence = bucket_sizes(ds, hidden_size)
    zero: Dict[str, Any] = {
        "stage": ds.zero_stage,
        "overlap_comm": ds.overlap_comm,
        "contiguous_gradients": ds.contiguous_gradients,
        "reduce_bucket_size": reduce_bucket,
    }
    if ds.zero_stage == 3:
        zero.update(
            stage3_prefetch_bucket_size=prefetch_bucket,
            stage3_param_persistence_threshold=persistence,
            stage3_gather_16bit_weights_on_model_save=ds.stage3_gather_16bit_weights_on_model_save,
        )
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if ds.offload_param:
        if ds.zero_stage != 3:
            raise ValueError("deepspeed.offload_param needs deepspeed.zero_stage=3")
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    out: Dict[str, Any] = {
        # DeepSpeed checks train_batch_size against its whole world size (AutoTP ranks included)
        # when no mpu/mesh is given; the real data-parallel batch is `lay.global_batch`.
        "train_batch_size": lay.micro_batch * lay.grad_accum * world_size,
        "train_micro_batch_size_per_gpu": lay.micro_batch,
        "gradient_accumulation_steps": lay.grad_accum,
        "gradient_clipping": trainer.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": trainer.precision == Precision.bf16},
        "fp16": {"enabled": trainer.precision == Precision.fp16, "initial_scale_power": 16},
        "steps_per_print": ds.steps_per_print,
        "wall_clock_breakdown": False,
        # jz3 passes torch.optim.AdamW (no fused CUDA Adam on CPU ranks).
        "zero_allow_untested_optimizer": True,
    }
    if ds.autotp_size > 1:
        out["tensor_parallel"] = {"autotp_size": ds.autotp_size}
    return out
