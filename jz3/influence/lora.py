"""LoRA (peft) on the influence model, and the LoRA Linear layers whose gradients we featurise."""

from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from jz3.config.influence import LoraConfig


def apply_lora(model: nn.Module, cfg: LoraConfig, dropout: float | None = None) -> nn.Module:
    """Wrap `model` with peft LoRA adapters (base weights frozen)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    pc = PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha,
                        lora_dropout=cfg.dropout if dropout is None else dropout,
                        target_modules=list(cfg.target_modules), bias="none",
                        task_type="CAUSAL_LM")
    return get_peft_model(model, pc)


def lora_linears(model: nn.Module) -> Dict[str, nn.Linear]:
    """The `lora_A`/`lora_B` Linear layers, by module name, in model order."""
    out: Dict[str, nn.Linear] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear) and (".lora_A." in name or ".lora_B." in name):
            if mod.bias is not None:
                raise ValueError(f"{name}: LoRA Linear layers with bias are not supported")
            out[name] = mod
    if not out:
        raise ValueError("the model has no LoRA Linear layers (check influence.lora.target_modules)")
    return out


def load_lora_state(model: nn.Module, state: Dict[str, torch.Tensor]) -> None:
    """Copy saved LoRA weights in; a missing or extra key is an error naming it."""
    mods = lora_linears(model)
    want = {f"{n}.weight" for n in mods}
    missing, extra = want - set(state), set(state) - want
    if missing or extra:
        raise KeyError(f"LoRA state mismatch: missing={sorted(missing)[:5]} extra={sorted(extra)[:5]}")
    with torch.no_grad():
        for n, m in mods.items():
            m.weight.copy_(state[f"{n}.weight"])
