"""Batched temperature / top-p sampling where every row draws from its own random stream."""

from __future__ import annotations

from typing import List

import torch

BISECT_STEPS = 24  # nucleus threshold resolution: max prob / 2**24


def row_uniforms(generators: List[torch.Generator], device: torch.device) -> torch.Tensor:
    """One U(0,1) draw per row, each from that row's own (CPU) generator: [B, 1]."""
    u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in generators])
    return u.to(device=device).unsqueeze(1)


def nucleus_threshold(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Per row, the largest probability t with sum(p[p >= t]) >= top_p: [B, 1].

    Found by bisection on t (a few vectorised passes over [B, V]) instead of sorting the
    vocabulary every step; {p >= t} is the nucleus (ties at t are all kept).
    """
    lo = torch.zeros_like(probs[:, :1])
    hi = probs.max(dim=-1, keepdim=True).values
    target = top_p.unsqueeze(1).to(probs.dtype)
    for _ in range(BISECT_STEPS):
        mid = (lo + hi) * 0.5
        mass = torch.where(probs >= mid, probs, 0.0).sum(-1, keepdim=True)
        ok = mass >= target
        lo = torch.where(ok, mid, lo)
        hi = torch.where(ok, hi, mid)
    return lo


def sample_next(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor,
                uniforms: torch.Tensor) -> torch.Tensor:
    """Next token per row of `logits` [B, V]; temperature <= 0 means greedy.

    Nucleus sampling by inverse CDF: keep the tokens of the nucleus, then pick the token where
    the row's uniform draw falls in the kept tokens' cumulative mass (vocabulary order).
    """
    logits = logits.float()
    greedy = temperature <= 0
    scaled = logits / temperature.clamp(min=1e-5).unsqueeze(1)
    probs = torch.softmax(scaled, dim=-1)
    if bool((top_p < 1).any()):
        probs = torch.where(probs >= nucleus_threshold(probs, top_p), probs, 0.0)
    cum = probs.double().cumsum(-1)
    target = uniforms.to(cum.dtype) * cum[:, -1:]
    pick = torch.searchsorted(cum, target, right=True).clamp(max=logits.shape[-1] - 1)
    # never land on a zeroed entry past the last kept token (floating point at the CDF's top)
    last_kept = (probs > 0).cumsum(-1).argmax(-1, keepdim=True)
    pick = torch.minimum(pick, last_kept)
    sampled = pick.squeeze(1)
    return torch.where(greedy, logits.argmax(-1), sampled)
