"""DeepSpeed settings that jz3 turns into a DeepSpeed JSON config."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DeepSpeedConfig:
    enabled: bool = True
    zero_stage: int = 3
    offload_optimizer: bool = False
    offload_param: bool = False
    overlap_comm: bool = True
    contiguous_gradients: bool = True
    reduce_bucket_size: int = 500_000_000
    stage3_prefetch_bucket_size: int = 50_000_000
    stage3_param_persistence_threshold: int = 100_000
    stage3_gather_16bit_weights_on_model_save: bool = True
    autotp_size: int = 1  # Megatron-style tensor parallel degree (DeepSpeed AutoTP training)
    steps_per_print: int = 1_000_000
