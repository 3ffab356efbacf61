"""DeepSpeed settings that jz3 turns into a DeepSpeed JSON config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class DeepSpeedConfig:
    enabled: bool = True
    zero_stage: int = 3
    offload_optimizer: bool = False
    offload_param: bool = False
    overlap_comm: bool = True
    contiguous_gradients: bool = True
    # None = sized from the model's hidden size h, as the release's configs/stage_*.json ask
    # ("auto", filled by HF Trainer): reduce bucket h^2, prefetch bucket 0.9 h^2, parameters
    # under 10 h elements stay gathered (Mistral-7B: 16.8M, 15.1M, 40,960 elements)
    reduce_bucket_size: Optional[int] = None
    stage3_prefetch_bucket_size: Optional[int] = None
    stage3_param_persistence_threshold: Optional[int] = None
    stage3_gather_16bit_weights_on_model_save: bool = True
    autotp_size: int = 1  # Megatron-style tensor parallel degree (DeepSpeed AutoTP training)
    steps_per_print: int = 1_000_000
