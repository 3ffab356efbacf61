"""SIGTERM / SIGUSR1 (SLURM preemption, `scancel --signal=USR1`) -> save a checkpoint and stop."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any, Dict

log = logging.getLogger(__name__)


class PreemptionHandler:
    """Records that a stop signal arrived; the trainer checks `requested` after every step."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self) -> None:
        self.requested = False
        self._previous: Dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        log.warning("received %s: will checkpoint and stop after this step", signal.Signals(signum).name)
        self.requested = True

    def install(self) -> PreemptionHandler:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def uninstall(self) -> None:
        for s, prev in self._previous.items():
            signal.signal(s, prev)
        self._previous.clear()
