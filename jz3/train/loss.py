"""Causal-LM loss as a SUM over target tokens (normalised by the caller by global token count)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def target_count(labels: torch.Tensor) -> int:
    """Number of predicted tokens: labels are unshifted, the model predicts labels[:, 1:]."""
    return int((labels[:, 1:] != IGNORE).sum())


def causal_lm_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of next-token cross-entropies (float32) over positions whose label is not -100.

    Shifts the labels (one pad column) instead of slicing the logits, so the [B, L, V] logits
    are not copied."""
    v = logits.shape[-1]
    shifted = F.pad(labels, (0, 1), value=IGNORE)[:, 1:]
    return F.cross_entropy(logits.reshape(-1, v).float(), shifted.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")
