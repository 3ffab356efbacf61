"""The training loop: gradient accumulation over packed micro-batches, token-weighted loss,
document-masked attention, clipping, schedules, checkpoints every N steps and on preemption.

Loss normalisation: every micro-batch contributes sum(token losses) / (target tokens of the whole
global batch, all ranks), so 1 rank x 4 micro-batches and 2 ranks x 2 micro-batches compute the
same gradient, and a packed row's loss is exactly the token-weighted mix of its documents.
"""

from __future__ import annotations

import logging
import time
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Set

import numpy as np
import psutil
import torch

from jz3.models.attention import document_forward_kwargs
from jz3.parallel.dist import DistInfo, all_reduce_sum, all_reduce_sum_async, barrier
from jz3.train import checkpoint as ckpt
from jz3.train.callbacks import CallbackList, TrainState
from jz3.train.data import TrainData
from jz3.train.engine import Engine
from jz3.train.loss import causal_lm_loss_sum, target_count
from jz3.train.signals import PreemptionHandler

log = logging.getLogger(__name__)


def memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return psutil.Process().memory_info().rss / 2**30


class Trainer:
    def __init__(self, engine: Engine, data: TrainData, state: TrainState, callbacks: CallbackList, *,
                 grad_accum: int, global_batch: int, seq_len: int, attn_impl: str, tp_size: int,
                 save_every: int, keep_last: int, flops_per_token: float, peak_flops: Optional[float],
                 aux_loss_coef: float = 0.0, save_steps: Optional[Set[int]] = None) -> None:
        self.engine = engine
        self.data = data
        self.state = state
        self.callbacks = callbacks
        self.grad_accum = grad_accum
        self.global_batch = global_batch
        self.seq_len = seq_len
        self.attn_impl = attn_impl
        self.tp_size = tp_size
        self.save_every = save_every
        self.save_steps = set(save_steps or ())  # extra checkpoint steps (epoch ends)
        self.keep_last = keep_last
        self.flops_per_token = flops_per_token
        self.peak_flops = peak_flops
        self.aux_loss_coef = aux_loss_coef
        self.dist: DistInfo = state.dist
        self.last_saved_step = -1

    # ------------------------------------------------------------------ one optimizer step
    def train_step(self, mbs: List[Dict[str, torch.Tensor]], stop_local: bool = False) -> Dict[str, float]:
        """One optimizer step. `stop_local` (this rank wants to stop) rides on the loss all-reduce:
        `metrics["stop"]` is the number of ranks that asked (one collective per step, not two)."""
        dev = self.engine.device
        local_targets = sum(target_count(mb["labels"]) for mb in mbs)
        # The global target count normalises every micro-batch's loss; its all-reduce overlaps
        # the first forward. TP ranks of one group hold the same batch: count it once.
        pending = all_reduce_sum_async(torch.tensor(float(local_targets), dtype=torch.float64))
        n_targets = 0.0
        lr = self.engine.lr
        loss_sum = torch.zeros((), dtype=torch.float64)
        aux_total = 0.0
        for i, mb in enumerate(mbs):
            ids, labels, pos = mb["input_ids"].to(dev), mb["labels"].to(dev), mb["position_ids"].to(dev)
            out = self.engine.forward(input_ids=ids, **document_forward_kwargs(pos, self.attn_impl))
            ls = causal_lm_loss_sum(out.logits, labels)
            if i == 0:
                n_targets = max(float(pending()) / self.tp_size, 1.0)
            loss = ls / n_targets
            aux = getattr(out, "aux_loss", None)
            if aux is not None and self.aux_loss_coef > 0:
                loss = loss + self.aux_loss_coef * aux / (self.grad_accum * self.engine.data_parallel_world)
                aux_total += float(aux.detach()) / self.grad_accum
            self.engine.backward(loss)
            self.engine.micro_step(last=i == len(mbs) - 1)
            loss_sum += ls.detach().double().cpu()
        summed = all_reduce_sum(torch.stack([loss_sum, torch.tensor(float(stop_local), dtype=torch.float64)]))
        total = float(summed[0]) / self.tp_size
        metrics = {"loss": total / n_targets, "lr": lr, "grad_norm": self.engine.grad_norm,
                   "target_tokens": n_targets, "stop": float(summed[1])}
        if aux_total:
            metrics["aux_loss"] = aux_total
        return metrics

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> Path:
        st = self.state
        path = ckpt.step_dir(st.output_dir, st.step)
        try:
            self._save(path)
        except BaseException:
            if self.dist.is_main:  # no half-written checkpoint outlives a failed save
                ckpt.discard_incomplete(st.output_dir, path)
            raise
        self.last_saved_step = st.step
        self.callbacks.on_save(st, path)
        return path

    def _save(self, path: Path) -> None:
        st = self.state
        if self.dist.is_main:
            path.mkdir(parents=True, exist_ok=True)
        barrier()
        self.engine.save(path)
        ckpt.save_rank_files(path, self.dist.rank)
        if self.dist.is_main:
            ckpt.write_trainer_state(path, {
                "step": st.step, "total_steps": st.total_steps, "tokens_seen": st.tokens_seen,
                "samples_seen": st.samples_seen, "world_size": self.dist.world_size,
                "engine": self.engine.kind.value,
                "sampler": self.data.sampler.state_dict(consumed=st.samples_seen),
            })
        barrier()
        if self.dist.is_main:
            ckpt.mark_latest(st.output_dir, path)
            ckpt.prune(st.output_dir, self.keep_last)
            log.info("saved checkpoint %s", path)
        barrier()

    # ------------------------------------------------------------------ the loop
    def fit(self) -> TrainState:
        st = self.state
        handler = PreemptionHandler().install()
        self.callbacks.on_train_start(st)
        it = iter(self.data.loader())
        try:
            while st.step < st.total_steps:
                t0 = time.perf_counter()
                mbs = [next(it) for _ in range(self.grad_accum)]
                batch_hash = zlib.crc32(b"".join(np.ascontiguousarray(mb["input_ids"].numpy()).tobytes()
                                                 for mb in mbs))
                metrics = self.train_step(mbs, stop_local=handler.requested or st.stop_requested)
                stop = metrics.pop("stop") > 0
                dt = time.perf_counter() - t0
                st.step += 1
                st.samples_seen += self.global_batch
                step_tokens = self.global_batch * self.seq_len
                st.tokens_seen += step_tokens
                tps = step_tokens / max(dt, 1e-9)
                mfu = (self.flops_per_token * tps / (self.peak_flops * self.dist.world_size)
                       if self.peak_flops else 0.0)
                metrics.update(tokens_per_s=tps, mfu=mfu, mem_gb=memory_gb(self.engine.device),
                               tokens_seen=float(st.tokens_seen), step_time_s=dt,
                               batch_hash=float(batch_hash))
                st.last_metrics = metrics
                self.callbacks.on_step_end(st, metrics)
                # A stop asked during this step's callbacks is seen at the next step's all-reduce.
                if stop or (self.save_every > 0 and st.step % self.save_every == 0) \
                        or st.step in self.save_steps:
                    self.save()
                if stop:
                    log.warning("stopping at step %d after a stop request (checkpoint saved)", st.step)
                    st.stop_requested = True
                    break
            if st.step >= st.total_steps and self.last_saved_step != st.step:
                self.save()
        finally:
            handler.uninstall()
        self.callbacks.on_train_end(st)
        return st
