"""Callbacks (OLMo-core style): small objects with hooks the trainer calls on every rank.

```python
class Callback:
    def on_train_start(self, state: TrainState) -> None: ...
    def on_step_end(self, state: TrainState, metrics: dict) -> None: ...
    def on_save(self, state: TrainState, ckpt_dir: Path) -> None: ...
    def on_train_end(self, state: TrainState) -> None: ...
```
`state.model` is the module being trained (under DeepSpeed, the engine's module: ZeRO-3
parameters are partitioned, gather them with `deepspeed.zero.GatheredParameters`),
`state.optimizer` the torch optimizer (plain torch: Adam moments in `optimizer.state[p]`;
under DeepSpeed use `deepspeed.utils.safe_get_full_optimizer_state(p, "exp_avg")` on all ranks),
`state.engine` the `jz3.train.engine` wrapper (`.kind` is `EngineKind.torch|deepspeed`).
Hooks run on every rank; guard rank-0-only work with `state.dist.is_main`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from jz3.parallel.dist import DistInfo


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    total_steps: int = 0
    tokens_seen: int = 0  # global input tokens consumed
    samples_seen: int = 0  # global sequences consumed (= step x global batch)
    dist: DistInfo = field(default_factory=DistInfo)
    output_dir: Path = Path(".")
    model: Any = None
    optimizer: Any = None
    engine: Any = None
    last_metrics: Dict[str, float] = field(default_factory=dict)
    stop_requested: bool = False  # set by a callback (or a signal) to save and stop after this step


class Callback:
    """Base class with no-op hooks; override what you need."""

    def on_train_start(self, state: TrainState) -> None:
        pass

    def on_step_end(self, state: TrainState, metrics: Dict[str, float]) -> None:
        pass

    def on_save(self, state: TrainState, ckpt_dir: Path) -> None:
        pass

    def on_train_end(self, state: TrainState) -> None:
        pass


class CallbackList(Callback):
    def __init__(self, callbacks: Optional[List[Callback]] = None) -> None:
        self.callbacks = list(callbacks or [])

    def on_train_start(self, state: TrainState) -> None:
        for c in self.callbacks:
            c.on_train_start(state)

    def on_step_end(self, state: TrainState, metrics: Dict[str, float]) -> None:
        for c in self.callbacks:
            c.on_step_end(state, metrics)

    def on_save(self, state: TrainState, ckpt_dir: Path) -> None:
        for c in self.callbacks:
            c.on_save(state, ckpt_dir)

    def on_train_end(self, state: TrainState) -> None:
        for c in self.callbacks:
            c.on_train_end(state)
