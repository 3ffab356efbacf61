"""Rank-0 tracking callbacks: a metrics JSONL file, a tqdm bar + console line, W&B."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from tqdm.auto import tqdm

from jz3.config.enums import WandbMode
from jz3.config.trainer import WandbConfig
from jz3.train.callbacks import Callback, TrainState

log = logging.getLogger(__name__)


class MetricsFileCallback(Callback):
    """Appends one JSON line per step to `metrics.jsonl` (kept across resumes: the last line for a
    step is the authoritative one)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fh: Any = None

    def on_train_start(self, state: TrainState) -> None:
        if state.dist.is_main:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")

    def on_step_end(self, state: TrainState, metrics: Dict[str, float]) -> None:
        if self._fh is not None:
            self._fh.write(json.dumps({"step": state.step, **metrics}) + "\n")
            self._fh.flush()

    def on_train_end(self, state: TrainState) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class ConsoleCallback(Callback):
    """tqdm bar on rank 0 and a log line every `every` steps."""

    def __init__(self, every: int) -> None:
        self.every = max(1, every)
        self._bar: Optional[tqdm] = None

    def on_train_start(self, state: TrainState) -> None:
        if state.dist.is_main:
            self._bar = tqdm(total=state.total_steps, initial=state.step, desc="train", unit="step",
                             dynamic_ncols=True)

    def on_step_end(self, state: TrainState, metrics: Dict[str, float]) -> None:
        if self._bar is None:
            return
        self._bar.update(1)
        self._bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{metrics['lr']:.2e}")
        if state.step % self.every == 0 or state.step == state.total_steps:
            log.info("step %d/%d loss %.4f lr %.3e grad_norm %.3f tok/s %.0f mfu %.4f mem %.2fGB",
                     state.step, state.total_steps, metrics["loss"], metrics["lr"],
                     metrics["grad_norm"], metrics["tokens_per_s"], metrics["mfu"], metrics["mem_gb"])

    def on_train_end(self, state: TrainState) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class WandbCallback(Callback):
    """Logs every step's metrics to W&B from rank 0 (`mode=offline` writes a local run folder)."""

    def __init__(self, cfg: WandbConfig, run_config: Any) -> None:
        self.cfg = cfg
        self.run_config = run_config
        self.run: Any = None

    def on_train_start(self, state: TrainState) -> None:
        if not state.dist.is_main or self.cfg.mode == WandbMode.disabled:
            return
        import wandb

        Path(self.cfg.dir).mkdir(parents=True, exist_ok=True)
        conf = asdict(self.run_config) if is_dataclass(self.run_config) else self.run_config
        self.run = wandb.init(project=self.cfg.project, entity=self.cfg.entity, name=self.cfg.name,
                              dir=self.cfg.dir, mode=self.cfg.mode.value, tags=list(self.cfg.tags),
                              config=json.loads(json.dumps(conf, default=str)), resume="allow")
        log.info("wandb run %s (%s) in %s", self.run.id, self.cfg.mode.value, self.run.dir)

    def on_step_end(self, state: TrainState, metrics: Dict[str, float]) -> None:
        if self.run is not None:
            self.run.log({f"train/{k}": v for k, v in metrics.items()}, step=state.step)

    def on_train_end(self, state: TrainState) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
