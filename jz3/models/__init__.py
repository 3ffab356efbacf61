"""Model builders: Llama / Mistral / Mixtral-shaped causal LMs from config, document-masked attention."""

from jz3.models.attention import resolve_attn_impl
from jz3.models.build import build_model, hf_config_from, hidden_size_of
from jz3.models.flops import flops_per_token

__all__ = ["build_model", "hf_config_from", "hidden_size_of", "resolve_attn_impl", "flops_per_token"]
