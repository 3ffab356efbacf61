"""Batched per-example gradients of LoRA Linear layers from captured activations x output grads.

For a bias-free Linear `y = x W^T`, the gradient of example n's loss is
`G_n = sum_t dy[n, t]^T x[n, t]` ([out, in]). One forward + one backward of the summed
per-example losses gives every `dy[n]` (examples do not interact), so no per-example loop.
"""

from __future__ import annotations

from typing import Dict, List

import torch
from torch import nn

from jz3.influence.examples import Batch, per_example_loss


class GradCapture:
    """Forward hooks keep each layer's input; tensor hooks keep the gradient of its output."""

    def __init__(self, modules: Dict[str, nn.Linear]):
        self.modules = modules
        self.acts: Dict[str, torch.Tensor] = {}
        self.out_grads: Dict[str, torch.Tensor] = {}
        self._handles = [m.register_forward_hook(self._fwd(n)) for n, m in modules.items()]

    def _fwd(self, name: str):
        def hook(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if not torch.is_grad_enabled() or not output.requires_grad:
                return
            self.acts[name] = inputs[0].detach()

            def save(g: torch.Tensor) -> None:
                self.out_grads[name] = g.detach()

            output.register_hook(save)

        return hook

    def clear(self) -> None:
        self.acts.clear()
        self.out_grads.clear()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def shapes(self) -> List[tuple]:
        """(name, out_features, in_features) of each captured layer."""
        return [(n, m.out_features, m.in_features) for n, m in self.modules.items()]


def backward_batch(model: nn.Module, batch: Batch, capture: GradCapture) -> torch.Tensor:
    """One forward/backward; fills `capture`; returns the per-example losses [N]."""
    capture.clear()
    dev = next(model.parameters()).device
    ids, att = batch.input_ids.to(dev), batch.attention_mask.to(dev)
    b = Batch(ids, att, batch.loss_mask.to(dev))
    logits = model(input_ids=ids, attention_mask=att).logits
    losses = per_example_loss(logits, b)
    weights = [m.weight for m in capture.modules.values()]
    torch.autograd.grad(losses.sum(), weights)
    missing = [n for n in capture.modules if n not in capture.out_grads]
    if missing:
        raise RuntimeError(f"no output gradient captured for {missing[:3]} (frozen LoRA layer?)")
    return losses.detach()


def per_example_grads(capture: GradCapture) -> Dict[str, torch.Tensor]:
    """`{name: [N, out, in]}` per-example weight gradients (float32)."""
    out = {}
    for n in capture.modules:
        a = capture.acts[n].float()
        g = capture.out_grads[n].float()
        out[n] = torch.einsum("nto,nti->noi", g, a)
    return out


def flatten_grads(grads: Dict[str, torch.Tensor]) -> torch.Tensor:
    """Concatenate per-layer gradients into `[N, P]` (model order), as LESS does."""
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], dim=1)
