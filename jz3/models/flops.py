"""Model FLOPs per token (for MFU), from the architecture numbers alone."""

from __future__ import annotations

from jz3.config.model import ModelConfig


def _attn_params(cfg: ModelConfig) -> int:
    """One layer's attention projections: q, o + k, v (grouped-query heads)."""
    h = cfg.hidden_size
    return h * h * 2 + 2 * h * cfg.num_key_value_heads * (h // cfg.num_attention_heads)


def active_params(cfg: ModelConfig) -> int:
    """Parameters touched per token (embeddings excluded; MoE counts the routed experts only)."""
    h, f, n = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    mlp = 3 * h * f
    if cfg.num_local_experts > 0:
        mlp = mlp * cfg.num_experts_per_tok + h * cfg.num_local_experts
    return n * (_attn_params(cfg) + mlp) + h * cfg.vocab_size  # + LM head


def total_params(cfg: ModelConfig) -> int:
    """Every parameter: all experts, input embeddings and (untied) LM head; norms left out."""
    h, f, n = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    mlp = 3 * h * f * max(1, cfg.num_local_experts) + h * cfg.num_local_experts
    return n * (_attn_params(cfg) + mlp) + h * cfg.vocab_size * (1 if cfg.tie_word_embeddings else 2)


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token: 6·N (fwd+bwd matmuls) + 12·L·h·s attention scores (PaLM appendix B)."""
    return 6.0 * active_params(cfg) + 12.0 * cfg.num_hidden_layers * cfg.hidden_size * seq_len
