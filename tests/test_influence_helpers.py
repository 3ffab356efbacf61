"""Helpers of the influence tests (no tests here): a tiny Llama with LoRA, real examples."""

from __future__ import annotations

import math

import torch

from jz3.config.influence import LoraConfig
from jz3.config.model import ModelConfig
from jz3.influence.examples import Encoder, load_examples
from jz3.influence.lora import apply_lora
from jz3.paths import shared_data_dir


def tiny_lora_model(seed: int = 0, r: int = 4):
    from jz3.models import build_model

    torch.manual_seed(seed)
    model = build_model(ModelConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                    num_key_value_heads=2, num_hidden_layers=2))
    model = apply_lora(model, LoraConfig(r=r, alpha=2 * r, dropout=0.0), dropout=0.0)
    with torch.no_grad():  # peft starts lora_B at 0: make both factors carry gradient
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.05)
    return model.eval()


def real_examples(n: int):
    """GSM8K train rows as target-style examples, plus JiuZhang3.0 samples."""
    d = shared_data_dir()
    half = n // 2
    return (load_examples(d / "gsm8k" / "train.jsonl", limit=n - half)
            + load_examples(d / "jiuzhang3_samples" / "cot_pretrain_sampled.jsonl", limit=half))


def encoder(tokenizer, max_len: int = 48) -> Encoder:
    return Encoder(tokenizer, max_len)


def jl_epsilon(k: int, n_points: int, delta: float = 1e-2) -> float:
    """Smallest eps with 4 n^2 exp(-k (eps^2/2 - eps^3/3) / 2) <= delta (Dasgupta-Gupta bound on
    the squared norms of x+y and x-y for all pairs; inner products of unit vectors then err by
    at most eps)."""
    need = 2.0 * math.log(4 * n_points**2 / delta) / k
    lo, hi = 0.0, 1.5
    for _ in range(60):
        mid = (lo + hi) / 2
        if mid**2 / 2 - mid**3 / 3 >= need:
            hi = mid
        else:
            lo = mid
    return hi
