"""Feature extraction: batched per-example LoRA gradients -> projected features -> shards."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
from tqdm import tqdm

from jz3.config.enums import ProjStructure
from jz3.influence.examples import Encoder, Example
from jz3.influence.grads import GradCapture, backward_batch, per_example_grads
from jz3.influence.lora import load_lora_state, lora_linears
from jz3.influence.precondition import AdamMoments, energy_weights, precondition
from jz3.influence.projection import ProjectionPlan
from jz3.influence.store import ShardWriter
from jz3.influence.warmup import WarmupCheckpoint

log = logging.getLogger(__name__)


class FeatureExtractor:
    """Per-example gradient features of one model: Adam (candidates) or plain (targets)."""

    def __init__(self, model: Any, encoder: Encoder, dim: int, seed: int, kind: Any,
                 factored: bool = True, structure: ProjStructure = ProjStructure.block,
                 energy_alloc: bool = False):
        self.model, self.encoder = model, encoder
        self.structure = ProjStructure(structure)
        self.factored = factored and self.structure == ProjStructure.kronecker
        self.dim, self.seed, self.kind, self.energy_alloc = dim, seed, kind, energy_alloc
        self.capture = GradCapture(lora_linears(model))
        self.plan = ProjectionPlan(self.capture.shapes(), dim, seed, kind, self.structure)

    def use_checkpoint(self, adam: AdamMoments | None) -> None:
        """Rebuild the plan for a warmup checkpoint (energy allocation depends on its moments);
        candidates and targets of one checkpoint share it."""
        weights = None
        if self.energy_alloc and adam is not None:
            weights = energy_weights(list(self.capture.modules), adam)
        self.plan = ProjectionPlan(self.capture.shapes(), self.dim, self.seed, self.kind,
                                   self.structure, weights)

    def batch_features(self, examples: Sequence[Example], adam: AdamMoments | None) -> torch.Tensor:
        """[N, D] float32 features of a batch (one forward + one backward)."""
        backward_batch(self.model, self.encoder.collate(examples), self.capture)
        if adam is None and self.factored:
            return self.plan.factored(self.capture.acts, self.capture.out_grads)
        grads = per_example_grads(self.capture)
        if adam is not None:
            grads = precondition(grads, adam)
        return self.plan.two_sided(grads)

    def extract(self, examples: Sequence[Example], ckpts: Sequence[WarmupCheckpoint],
                writer: ShardWriter, adam: bool, batch_size: int, desc: str) -> int:
        """Write every checkpoint's features, resuming from the writer's progress; rows computed."""
        computed = 0
        for ck in ckpts:
            start = writer.rows_done(ck.name)
            if start >= len(examples):
                continue
            if start:
                log.info("%s %s: resuming at row %d of %d", desc, ck.name, start, len(examples))
            load_lora_state(self.model, {f"{k}.weight": v for k, v in ck.lora.items()})
            self.use_checkpoint(ck.adam)
            bar = tqdm(total=len(examples), initial=start, desc=f"{desc} {ck.name}", unit="ex")
            for b0 in range(start, len(examples), batch_size):
                batch = examples[b0:b0 + batch_size]
                feats = self.batch_features(batch, ck.adam if adam else None)
                writer.write(ck.name, b0, feats)
                computed += len(batch)
                bar.update(len(batch))
            bar.close()
        writer.finish()
        return computed
