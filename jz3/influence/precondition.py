"""The Adam preconditioner of LESS, applied to per-example gradients.

With the warmup checkpoint's moments (m, v) and betas (b1, b2), a candidate's feature is the
Adam update direction its gradient g would produce:
    m' = b1 * m + (1 - b1) * g
    v' = b2 * v + (1 - b2) * g**2
    feature = m' / sqrt(v' + eps)
(LESS, `obtain_gradients_with_adam`; eps inside the sqrt, as LESS does). Target examples use
plain gradients (SGD features).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence

import torch


@dataclass
class AdamMoments:
    exp_avg: Dict[str, torch.Tensor]  # keyed by LoRA module name (no ".weight")
    exp_avg_sq: Dict[str, torch.Tensor]
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


def adam_feature(g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, beta1: float, beta2: float,
                 eps: float) -> torch.Tensor:
    """Per-example Adam direction; g is [N, *shape], m and v are [*shape]."""
    m1 = beta1 * m + (1.0 - beta1) * g
    v1 = beta2 * v + (1.0 - beta2) * g * g
    return m1 / torch.sqrt(v1 + eps)


def precondition(grads: Dict[str, torch.Tensor], adam: AdamMoments) -> Dict[str, torch.Tensor]:
    """Apply `adam_feature` to every layer; a layer without moments is a KeyError naming it."""
    out = {}
    for n, g in grads.items():
        if n not in adam.exp_avg or n not in adam.exp_avg_sq:
            raise KeyError(f"no Adam moments for LoRA layer {n!r} in the warmup checkpoint")
        m = adam.exp_avg[n].to(g.device, torch.float32)
        v = adam.exp_avg_sq[n].to(g.device, torch.float32)
        out[n] = adam_feature(g, m, v, adam.beta1, adam.beta2, adam.eps)
    return out


def energy_weights(names: Sequence[str], adam: AdamMoments) -> List[float]:
    """Per-layer share of the projection dims: sqrt(E|f|^2 * E|g|^2), estimated from the warmup
    moments (E|g|^2 ~ sum v; E|f|^2 ~ sum v / (v + eps), the Adam feature is O(1) where the
    gradient clears eps and ~0 elsewhere). Minimises the summed JL variance
    sum_m E|f_m|^2 E|g_m|^2 / D_m over the split sum_m D_m = D."""
    out = []
    for n in names:
        v = adam.exp_avg_sq[n].double()
        out.append(float((v.sum() * (v / (v + adam.eps)).sum()).sqrt()))
    return out
