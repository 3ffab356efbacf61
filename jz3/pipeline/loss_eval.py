"""Compatibility shim: the reference-solution loss lives in `jz3.eval.loss` (the pipeline only
calls it). Kept until the pipeline imports `jz3.eval.loss` directly."""

from jz3.eval.loss import QUESTION, evaluate_losses, solution_loss

__all__ = ["QUESTION", "evaluate_losses", "solution_loss"]
