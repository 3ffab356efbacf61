"""Model architecture config: real numbers for the presets live in hydra_configs/model/."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from jz3.config.enums import Arch, AttnImpl


@dataclass
class ModelConfig:
    arch: Arch = Arch.llama
    name: str = "tiny-llama"
    path: Optional[str] = None  # local HF checkpoint folder; None = build from the numbers below
    # with path null, a model of >= 1B parameters is refused unless this says random weights
    # are meant (a forgotten path would otherwise pretrain a 7B model from scratch)
    from_scratch: bool = False
    vocab_size: int = 2048
    hidden_size: int = 64
    intermediate_size: int = 176
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 2048
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    sliding_window: Optional[int] = None  # Mistral/Mixtral
    num_local_experts: int = 0  # > 0 = Mixtral MoE
    num_experts_per_tok: int = 2
    router_aux_loss_coef: float = 0.02
    # MoE: return router logits in training so the load-balancing loss (x router_aux_loss_coef)
    # joins the loss, for a model built here or loaded from a checkpoint (the release's
    # train_pack.py sets it on every loaded model whose config has it)
    output_router_logits: bool = True
    tie_word_embeddings: bool = False
    attn_impl: AttnImpl = AttnImpl.auto
    gradient_checkpointing: bool = False
