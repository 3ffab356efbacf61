"""Build Llama / Mistral / Mixtral causal LMs from a `ModelConfig` or a local HF checkpoint.

Under ZeRO-3, pass the DeepSpeed config dict: a live `HfDeepSpeedConfig` makes transformers
construct (or load) the model inside `deepspeed.zero.Init`, so every parameter is partitioned
as it is created and a 7B model never sits whole on one rank.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    LlamaConfig,
    MistralConfig,
    MixtralConfig,
    PretrainedConfig,
    PreTrainedModel,
)

from jz3.config.enums import Arch
from jz3.config.model import ModelConfig
from jz3.models.attention import resolve_attn_impl
from jz3.models.flops import total_params

log = logging.getLogger(__name__)

# Keeps the HfDeepSpeedConfig alive: transformers only holds a weak reference to it.
_HF_DS_CONFIG: Any = None


def hf_config_from(cfg: ModelConfig) -> PretrainedConfig:
    """The transformers config for a preset architecture."""
    common: Dict[str, Any] = dict(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        rope_theta=cfg.rope_theta,
        rms_norm_eps=cfg.rms_norm_eps,
        tie_word_embeddings=cfg.tie_word_embeddings,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
        use_cache=False,
    )
    if cfg.arch == Arch.llama:
        return LlamaConfig(**common)
    if cfg.arch == Arch.mistral:
        return MistralConfig(sliding_window=cfg.sliding_window, **common)
    if cfg.arch == Arch.mixtral:
        if cfg.num_local_experts <= 0:
            raise ValueError("model.arch=mixtral needs model.num_local_experts > 0")
        return MixtralConfig(
            sliding_window=cfg.sliding_window,
            num_local_experts=cfg.num_local_experts,
            num_experts_per_tok=cfg.num_experts_per_tok,
            router_aux_loss_coef=cfg.router_aux_loss_coef,
            output_router_logits=cfg.output_router_logits,
            **common,
        )
    raise ValueError(f"model.arch: unknown architecture {cfg.arch!r}")


RANDOM_INIT_LIMIT = 1_000_000_000  # parameters


def random_init_error(cfg: ModelConfig, path: Optional[str] = None,
                      key: str = "model") -> Optional[str]:
    """Why a model of >= 1B parameters may not start from random weights here (None if it may):
    with `model.path` left null a paper-scale preset (Mistral-7B, DeepSeekMath-7B) would
    otherwise train from random initialisation for GPU-weeks unless `model.from_scratch`.
    `key` names the section in the message."""
    n = total_params(cfg)
    if path or cfg.path or cfg.from_scratch or n < RANDOM_INIT_LIMIT:
        return None
    return (f"{key}.path is null: {cfg.name} ({n / 1e9:.1f}B parameters) would start from random "
            f"weights. Set {key}.path to a local checkpoint folder, or {key}.from_scratch=true "
            "if random initialisation is what you want.")


def check_weights_source(cfg: ModelConfig, path: Optional[str] = None, key: str = "model") -> None:
    """Raise `random_init_error`'s message, if any."""
    error = random_init_error(cfg, path, key)
    if error:
        raise ValueError(error)


def enable_zero3_init(ds_config: Optional[Dict[str, Any]]) -> None:
    """Register the DeepSpeed config with transformers (ZeRO-3 => partitioned construction)."""
    global _HF_DS_CONFIG
    if ds_config is None:
        _HF_DS_CONFIG = None
        return
    from transformers.integrations import HfDeepSpeedConfig

    _HF_DS_CONFIG = HfDeepSpeedConfig(ds_config)


def build_model(
    cfg: ModelConfig,
    dtype: torch.dtype = torch.float32,
    ds_config: Optional[Dict[str, Any]] = None,
    path: Optional[str] = None,
) -> PreTrainedModel:
    """A causal LM from `path` (or `cfg.path`) if given, else freshly initialised from `cfg`.

    `ds_config` with ZeRO stage 3 builds the model partitioned across ranks.
    """
    check_weights_source(cfg, path)
    attn = resolve_attn_impl(cfg.attn_impl)
    zero3 = ds_config is not None and ds_config.get("zero_optimization", {}).get("stage", 0) == 3
    enable_zero3_init(ds_config if zero3 else None)
    src = path or cfg.path
    if src:
        log.info("loading %s from %s (attn=%s, zero3=%s)", cfg.arch.value, src, attn, zero3)
        model = AutoModelForCausalLM.from_pretrained(
            src, dtype=dtype, attn_implementation=attn, local_files_only=True
        )
        model.config.use_cache = False
        apply_router_settings(model, cfg)
    else:
        hf_cfg = hf_config_from(cfg)
        log.info("building %s %s from config (attn=%s, zero3=%s)", cfg.arch.value, cfg.name, attn, zero3)
        model = AutoModelForCausalLM.from_config(hf_cfg, dtype=dtype, attn_implementation=attn)
    if cfg.gradient_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.2x
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def apply_router_settings(model: PreTrainedModel, cfg: ModelConfig) -> None:
    """On a loaded MoE checkpoint: `model.output_router_logits` and `router_aux_loss_coef`
    (a checkpoint's config.json usually leaves router logits off, so its forward would return
    no load-balancing loss). Dense models are left as they are."""
    if not hasattr(model.config, "output_router_logits"):
        return
    model.config.output_router_logits = cfg.output_router_logits
    model.config.router_aux_loss_coef = cfg.router_aux_loss_coef
    if hasattr(model, "router_aux_loss_coef"):
        model.router_aux_loss_coef = cfg.router_aux_loss_coef
    log.info("MoE checkpoint: output_router_logits=%s, router_aux_loss_coef=%s",
             cfg.output_router_logits, cfg.router_aux_loss_coef)


def router_aux_coef(model: PreTrainedModel, cfg: ModelConfig) -> float:
    """The weight of the router load-balancing loss in training (0 when the model returns none)."""
    return cfg.router_aux_loss_coef if getattr(model.config, "output_router_logits", False) else 0.0


def load_hf_config(path: str) -> PretrainedConfig:
    return AutoConfig.from_pretrained(path, local_files_only=True)


def hidden_size_of(cfg: ModelConfig, path: Optional[str] = None) -> int:
    """The hidden size of the model `build_model(cfg, path=path)` builds: a checkpoint's own
    config wins over the preset's field."""
    src = path or cfg.path
    return int(load_hf_config(src).hidden_size) if src else cfg.hidden_size
