"""Kill a process's helpers when it dies without stopping them (SIGKILL, the OOM killer).

vLLM's engine core is a separate process that keeps running (and holding its KV cache) when the
process that started it is killed with SIGKILL, also while the engine is still starting.
`watch()`, called before the helpers start, launches this file as a small watchdog process: it
notes every descendant of its parent created from then on; once the parent is gone it waits
`GRACE_S` for them to exit on their own, then SIGKILLs those still alive (the same processes:
pid and start time checked). It exits by itself once the helpers it saw have all exited.
Run as a script (stdlib and psutil only).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Dict, List

POLL_S = 1.0
GRACE_S = 5.0


def _alive(procs: Dict[int, float]) -> List[int]:
    import psutil

    out = []
    for pid, started in procs.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == started and p.status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.Error:
            pass
    return out


def watch() -> subprocess.Popen:
    """Start the watchdog over the processes this one starts from now on."""
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), str(os.getpid()),
                             repr(time.time() - 1.0)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def main(argv: List[str]) -> int:
    import psutil

    parent, since = int(argv[0]), float(argv[1])
    me = os.getpid()
    seen: Dict[int, float] = {}
    while os.getppid() == parent:
        try:
            kids = psutil.Process(parent).children(recursive=True)
        except psutil.Error:
            break
        for c in kids:
            try:
                if c.pid != me and c.pid not in seen and c.create_time() >= since:
                    seen[c.pid] = c.create_time()
            except psutil.Error:
                continue
        if seen and not _alive(seen):
            return 0
        time.sleep(POLL_S)
    deadline = time.monotonic() + GRACE_S
    while _alive(seen) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in _alive(seen):
        os.kill(pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
