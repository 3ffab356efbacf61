"""Batched temperature / top-p sampling where every row draws from its own random stream."""

from __future__ import annotations

from typing import List

import torch


def row_uniforms(generators: List[torch.Generator], device: torch.device) -> torch.Tensor:
    """One U(0,1) draw per row, each from that row's own (CPU) generator: [B, 1]."""
    u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in generators])
    return u.to(device=device).unsqueeze(1)


def sample_next(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor,
                uniforms: torch.Tensor) -> torch.Tensor:
    """Next token per row of `logits` [B, V]; temperature <= 0 means greedy.

    Nucleus sampling by inverse CDF: sort, keep the smallest prefix whose mass reaches top_p,
    then pick the token where the row's uniform draw falls in the kept prefix's cumulative mass.
    """
    logits = logits.float()
    greedy = temperature <= 0
    scaled = logits / temperature.clamp(min=1e-5).unsqueeze(1)
    probs = torch.softmax(scaled, dim=-1)
    sorted_p, order = probs.sort(dim=-1, descending=True)
    before = sorted_p.cumsum(-1) - sorted_p
    kept = torch.where(before < top_p.unsqueeze(1), sorted_p, torch.zeros_like(sorted_p))
    cum = kept.double().cumsum(-1)
    target = uniforms.to(cum.dtype) * cum[:, -1:]
    pick = torch.searchsorted(cum, target, right=True).clamp(max=logits.shape[-1] - 1)
    # never land on a zeroed tail entry (floating-point edge at the top of the CDF)
    n_kept = (kept > 0).sum(-1, keepdim=True).clamp(min=1)
    pick = torch.minimum(pick, n_kept - 1)
    sampled = order.gather(-1, pick).squeeze(1)
    return torch.where(greedy, logits.argmax(-1), sampled)
