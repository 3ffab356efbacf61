"""Harness side of the sandbox's fork server: start it in the jail, send programs, get reports.

A `ForkServer` is one jailed interpreter (jz3.eval.jail_server) that imported the usual modules
once and forks a fresh, namespaced child per program. One program runs at a time per server;
`ServerPool` keeps idle servers for reuse across calls and threads. The harness bounds every
wait itself: no answer within the program's wall time + a grace period, and the whole jail is
killed (`--die-with-parent` and the jail's pid namespace take everything in it along). Each
jail sits in cgroups of its own (jz3.eval.cgroups): per program the harness sets the memory and
pids limits, polls the CPU of all the program's processes (killing its pid namespace at
`cpu_time_s`) and reads the OOM-kill counter; the report gets `cg_cpu_s`, `cpu_killed`,
`oom_kills` and `unenforced` (the limits no cgroup enforces here).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import queue
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from jz3.eval.cgroups import JailCgroups, Limit
from jz3.eval.jail import as_uid, bwrap_command

log = logging.getLogger(__name__)
_SERVER_SRC = (Path(__file__).with_name("jail_server.py")).read_text()
DEFAULT_PRELOAD = ("math", "fractions", "itertools", "numpy", "sympy")
# run once in the server after the imports: sympy's lazily imported solvers, printers, etc.
WARMUP = """
import sympy as sp, numpy as np
x, y = sp.symbols("x y")
sp.solve(x**2 - 2*x - 3, x); sp.solve([x + y - 3, x - y - 1], [x, y]); sp.simplify((x**2 - 1)/(x - 1))
sp.factor(x**2 - 1); sp.expand((x + 1)**3); sp.integrate(x**2, (x, 0, 1)); sp.diff(sp.sin(x), x)
sp.Rational(1, 3) + sp.sqrt(8); sp.limit(sp.sin(x)/x, x, 0); sp.N(sp.pi, 10); sp.nsimplify(0.5)
sp.latex(x**2); str(sp.Matrix([[1, 2], [3, 4]]).det()); sp.isprime(97); sp.binomial(10, 3)
np.linalg.solve(np.eye(2), np.ones(2)); np.array([1.5]).round(2)
"""
_GRACE_S = 15.0
_JAIL_PIDS = 8  # processes of the jail itself, besides the program's `max_procs`
_POLL_S = 0.05  # how often the harness reads a running program's CPU use


class ServerError(RuntimeError):
    """The server died or broke protocol (not the program's fault)."""


# PR_SET_PDEATHSIG (behind --die-with-parent) fires when the *thread* that started bwrap ends:
# every server is started from one long-lived thread per process (re-made after a fork).
_spawn_q: Optional[queue.Queue] = None
_spawner_pid = -1
_spawn_lock = threading.Lock()


def _spawner(q: queue.Queue) -> None:
    while True:
        fn, fut = q.get()
        try:
            fut.set_result(fn())
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            fut.set_exception(e)


def _spawn(fn: Callable[[], Any]) -> Any:
    global _spawn_q, _spawner_pid
    with _spawn_lock:
        if _spawner_pid != os.getpid() or _spawn_q is None:
            _spawn_q, _spawner_pid = queue.Queue(), os.getpid()
            threading.Thread(target=_spawner, args=(_spawn_q,), name="jz3-sandbox-spawner",
                             daemon=True).start()
        q = _spawn_q
    fut: Future = Future()
    q.put((fn, fut))
    return fut.result()


class ForkServer:
    """One jailed fork server. `jailed=False` (the loudly logged `unsafe` mode) runs the same
    server without bwrap and without per-program namespaces: rlimits and timeouts only.
    `warmup`: extra code the server runs once after its imports (e.g. to register a module that
    every program then finds in `sys.modules`)."""

    def __init__(self, preload: Sequence[str] = DEFAULT_PRELOAD, jailed: bool = True,
                 uid: Optional[int] = None, python: str = sys.executable,
                 sys_path: Sequence[str] = (), tag: str = "", tmp_root: Optional[str] = None,
                 warmup: str = ""):
        self.jailed = jailed
        self.unsafe_root: Optional[str] = None
        self.cgroups = JailCgroups()
        cfg: Dict[str, Any] = {"preload": list(preload), "namespaces": jailed,
                               "sys_path": list(sys_path), "tag": tag,
                               "warmup": (WARMUP if "sympy" in preload else "") + warmup}
        if jailed:
            # the whole jail in cgroups of its own (limits set per program)
            self.cgroups = JailCgroups.create()
            cmd = self.cgroups.enter_argv() + as_uid(uid) + bwrap_command(
                python, tuple(sys_path)) + ["--", python, "-I", "-B", "-c", _SERVER_SRC,
                                            json.dumps(cfg)]
        else:
            self.unsafe_root = tempfile.mkdtemp(prefix="jz3-unsafe-sbx-", dir=tmp_root)
            cfg["unsafe_root"] = self.unsafe_root
            cmd = [python, "-I", "-B", "-c", _SERVER_SRC, json.dumps(cfg)]
        self.proc: subprocess.Popen = _spawn(lambda: subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, close_fds=True, env={"PATH": "/usr/bin:/bin",
                                                          "LANG": "C.UTF-8"}))
        hello = self._read(60.0)
        if not hello or not hello.get("ready"):
            raise ServerError(f"the sandbox server did not start: {self._stderr_tail()}")
        self.preloaded: List[str] = hello.get("preloaded", [])
        # pid-namespace depth of the programs (below bwrap's namespace and the server's)
        self._program_depth = _ns_depth(self.proc.pid) + 2

    @property
    def cgroup(self) -> Optional[Path]:
        """The jail's pids cgroup (None: none)."""
        return self.cgroups.dirs.get(Limit.pids)

    @property
    def unenforced(self) -> Tuple[str, ...]:
        """The limits no cgroup enforces for this server's programs."""
        return tuple(limit.value for limit in self.cgroups.unenforced)

    # ------------------------------------------------------------------ protocol
    def _stderr_tail(self) -> str:
        self.kill()
        try:
            err = self.proc.stderr.read().decode("utf-8", "replace") if self.proc.stderr else ""
        except (OSError, ValueError):
            err = ""
        return (err.strip().splitlines() or [f"exit status {self.proc.returncode}"])[-1][:500]

    def _read_exact(self, n: int, deadline: float,
                    tick: Optional[Callable[[], None]] = None) -> Optional[bytes]:
        assert self.proc.stdout is not None
        fd, buf = self.proc.stdout.fileno(), bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not select.select([fd], [], [], min(left, _POLL_S) if tick else left)[0]:
                if tick is None or time.monotonic() >= deadline:
                    return None
                tick()
                continue
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                return None
            buf.extend(chunk)
        return bytes(buf)

    def _read(self, timeout: float,
              tick: Optional[Callable[[], None]] = None) -> Optional[Dict[str, Any]]:
        deadline = time.monotonic() + timeout
        head = self._read_exact(4, deadline, tick)
        if head is None:
            return None
        body = self._read_exact(struct.unpack(">I", head)[0], deadline, tick)
        return None if body is None else json.loads(body)

    def run(self, req: Dict[str, Any]) -> Dict[str, Any]:
        """Send one program, wait for its report (raises ServerError if the server fails)."""
        assert self.proc.stdin is not None
        cg = self.cgroups
        req = {**req, "id": uuid.uuid4().hex[:12], "memory_cgroup": Limit.memory in cg.dirs}
        # pids: setpriv/sh, bwrap x2, server, keeper, init + the program's
        cg.set_limits(int(req["memory_mb"]), _JAIL_PIDS + int(req["max_procs"]))
        cpu0, oom0 = cg.cpu_s(), cg.oom_kills()
        cpu_killed = mem_killed = False

        def tick() -> None:  # CPU of all the program's processes and the jail's memory: the
            nonlocal cpu_killed, mem_killed  # program's namespace dies at either limit
            if cpu_killed or mem_killed:
                return
            cpu = cg.cpu_s()
            if cpu is not None and cpu0 is not None and cpu - cpu0 > float(req["cpu_time_s"]):
                cpu_killed = cg.kill_programs(self._program_depth) > 0
            elif cg.at_memory_limit():  # kill now rather than after the kernel's reclaim
                mem_killed = cg.kill_programs(self._program_depth) > 0

        data = json.dumps(req).encode()
        try:
            self.proc.stdin.write(struct.pack(">I", len(data)) + data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as e:
            raise ServerError(f"the sandbox server is gone: {e}") from e
        rep = self._read(float(req["wall_time_s"]) + _GRACE_S,
                         tick if cg.dirs else None)
        oom = cg.oom_kills() - oom0 + int(mem_killed)
        if rep is None or rep.get("id") != req["id"]:
            if oom:  # the OOM killer took the server or keeper: the program's doing
                self.kill()
                return {"id": req["id"], "oom_kills": oom, "unenforced": list(self.unenforced),
                        "harness_error": "the jail was OOM-killed"}
            raise ServerError("the sandbox server did not answer in time: "
                              + self._stderr_tail())
        cpu1 = cg.cpu_s()
        if cpu0 is not None and cpu1 is not None:
            rep["cg_cpu_s"] = cpu1 - cpu0
        rep.update(cpu_killed=cpu_killed, oom_kills=oom, unenforced=list(self.unenforced))
        return rep

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        self.cgroups.remove()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def close(self) -> None:
        for s in (self.proc.stdin,):
            with contextlib.suppress(OSError, ValueError):
                if s is not None:
                    s.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.kill()
        for s in (self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError, ValueError):
                if s is not None:
                    s.close()
        if self.unsafe_root:
            shutil.rmtree(self.unsafe_root, ignore_errors=True)
        self.cgroups.remove()


def _ns_depth(pid: int) -> int:
    """How many pid namespaces (as seen from here) `pid` is in."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return len(line.split()) - 1
    except OSError:
        pass
    return 1


class ServerPool:
    """Idle servers by key (what they were started with), reused across threads; at most `keep` idle each."""

    def __init__(self, keep: int = 4):
        self.keep = keep
        self._idle: Dict[Tuple, List[ForkServer]] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def server(self, key: Tuple, factory: Callable[[], ForkServer]):
        """An idle server made by `factory` for `key` (or a new one), returned after use."""
        srv = None
        with self._lock:
            idle = self._idle.setdefault(key, [])
            while idle and srv is None:
                cand = idle.pop()
                if cand.alive():
                    srv = cand
                else:
                    cand.close()
        if srv is None:
            srv = factory()
        healthy = False
        try:
            yield srv
            healthy = srv.alive()
        finally:
            with self._lock:
                idle = self._idle.setdefault(key, [])
                if healthy and len(idle) < self.keep:
                    idle.append(srv)
                    srv = None
            if srv is not None:
                srv.close()

    def close(self) -> None:
        with self._lock:
            servers = [s for v in self._idle.values() for s in v]
            self._idle.clear()
        for s in servers:
            s.close()


POOL = ServerPool()
atexit.register(POOL.close)


def _after_fork_in_child() -> None:
    """A forked child must not talk to its parent's servers (shared pipes): start afresh."""
    global _spawn_lock
    _spawn_lock = threading.Lock()
    POOL._lock = threading.Lock()
    POOL._idle = {}


os.register_at_fork(after_in_child=_after_fork_in_child)
