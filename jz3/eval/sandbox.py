"""Run model-written Python without trusting it: `run_python`, `SandboxPool`.

Each program runs in a bubblewrap jail (jz3.eval.jail) as a fresh child of a fork server that
imported sympy/numpy once (jz3.eval.forkserver, jz3.eval.jail_server); the child gets its own
user, mount, pid, ipc, net and uts namespaces, fresh capped tmpfs for its working folder, /tmp
and /dev/shm, a private read-only /dev, no capabilities, a seccomp filter, no keyring of the
harness, rlimits, cgroup limits on memory, processes and CPU across all its processes, and is
killed (with its whole pid namespace) at the wall time. docs/GRADING.md lists what each layer
stops. The verdict is built only from what the harness observes: exit status, signal, rusage,
cgroup counters, its own timer and output count - never from the program's text. Where no jail
can be set up, or no cgroup enforces a limit, `SandboxPool` refuses (`SandboxUnavailable`)
unless `SandboxConfig.unsafe` is set (then `ExecResult.unenforced` names what is not enforced);
`run_python` never raises.
"""

from __future__ import annotations

import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from jz3.config.eval import SandboxConfig
from jz3.eval import cgroups
from jz3.eval.forkserver import DEFAULT_PRELOAD, POOL, ForkServer, ServerError
from jz3.eval.jail import JailStatus, jail_status

log = logging.getLogger(__name__)
__all__ = ["ExecResult", "SandboxPool", "SandboxUnavailable", "run_python", "jail_status",
           "sandbox_mode"]
_warned_unsafe = False


class SandboxUnavailable(RuntimeError):
    """No jail can be set up here and `eval.sandbox.unsafe` is not set."""


@dataclass
class ExecResult:
    stdout: str
    stderr: str
    returncode: Optional[int]
    timed_out: bool = False
    error: Optional[str] = None  # None = ran and exited 0; else a short reason
    wall_s: float = 0.0
    truncated: bool = False
    signal: Optional[int] = None  # the signal that ended the program, as its parent saw it
    cpu_s: float = 0.0  # CPU seconds of all the program's processes (cgroup; else its rusage)
    maxrss_kb: int = 0
    workdir: str = ""  # the program's (private, already gone) working folder
    unenforced: Tuple[str, ...] = ()  # limits no cgroup enforced (`unsafe` only): memory, ...

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def reason(self) -> Optional[str]:
        return self.error

    def feedback(self, max_chars: int = 2000) -> str:
        """What the model sees after ```output: stdout, or the last error line."""
        if self.ok:
            return self.stdout.strip()[:max_chars]
        last = [ln for ln in self.stderr.strip().splitlines() if ln.strip()]
        msg = last[-1] if last else (self.error or "error")
        out = self.stdout.strip()
        return ((out + "\n") if out else "")[:max_chars] + msg[:500]


def sandbox_mode(limits: SandboxConfig) -> JailStatus:
    """The jail this machine gives (ok) or why none (not ok); `unsafe` decides what follows."""
    import os

    uid = limits.uid_base if limits.drop_privileges and os.geteuid() == 0 else None
    return jail_status(uid, limits.interpreter)


def missing_cgroups(limits: SandboxConfig) -> Tuple[str, ...]:
    """The limits (memory, pids, cpu) no cgroup can enforce for this harness."""
    del limits
    return tuple(limit.value for limit in cgroups.missing())


def _no_cgroup_reason(missing: Sequence[str]) -> str:
    return (f"no cgroup for {', '.join(missing)} here (memory would be an address-space rlimit "
            "that tmpfs and memfd pages escape, CPU a per-process rlimit); run as root, or "
            "delegate `<your cgroup>/jz3-sandbox-<uid>` (jz3.eval.cgroups.delegate)")


def _unsafe_warning(why: str) -> None:
    global _warned_unsafe
    if why.startswith("no cgroup"):
        msg = f"SANDBOX UNSAFE: {why}; eval.sandbox.unsafe=true runs model code without them"
    else:
        msg = (f"SANDBOX UNSAFE: no jail here ({why}); eval.sandbox.unsafe=true runs "
               "model-written code with rlimits and timeouts only - it can read and write your "
               "files and reach the network")
    log.warning(msg)
    if not _warned_unsafe:
        _warned_unsafe = True
        import sys

        print(f"WARNING: {msg}", file=sys.stderr, flush=True)


def _request(code: str, limits: SandboxConfig) -> Dict[str, Any]:
    return {"code": code, "cpu_time_s": int(limits.cpu_time_s),
            "wall_time_s": float(limits.wall_time_s), "memory_mb": int(limits.memory_mb),
            "max_file_mb": int(limits.max_file_mb), "max_procs": int(limits.max_procs),
            "max_output_bytes": int(limits.max_output_bytes), "audit_hook": limits.audit_hook,
            "tmpfs_mb": max(16, 4 * int(limits.max_file_mb))}


def _classify(rep: Dict[str, Any], limits: SandboxConfig) -> Optional[str]:
    """The verdict, from the parent's observations only (wait status, rusage, cgroup counters,
    its clock and byte count); the program's last stderr line only names an exception."""
    sig, cpu = rep.get("signal"), rep.get("utime", 0.0) + rep.get("stime", 0.0)
    if rep.get("oom_kills"):
        return f"memory_limit: more than {limits.memory_mb} MB of memory (its cgroup)"
    if rep.get("cpu_killed"):
        return f"cpu_limit: more than {limits.cpu_time_s}s of CPU time (all its processes)"
    if rep.get("timed_out"):
        return f"timeout: wall time over {limits.wall_time_s:g}s"
    if rep.get("truncated"):
        return f"output_limit: more than {limits.max_output_bytes} bytes of output"
    if not rep.get("setup_ok", True):
        return "sandbox_error: the program's sandbox could not be set up"
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= limits.cpu_time_s - 0.05):
        return f"cpu_limit: more than {limits.cpu_time_s}s of CPU time"
    if sig == signal.SIGXFSZ:
        return f"file_size_limit: a file over {limits.max_file_mb} MB"
    if sig is not None:
        return f"killed by signal {signal.Signals(sig).name}"
    if rep.get("exit") == 0:
        return None
    lines = [ln for ln in rep.get("stderr", "").strip().splitlines() if ln.strip()]
    last = lines[-1][:300] if lines else f"exit status {rep.get('exit')}"
    # the exit status decides "failed"; the last line only names it (a MemoryError there is
    # the program's own account, so it stays an exception: memory_limit comes from the cgroup)
    return f"exception: {last}"


def _to_result(rep: Dict[str, Any], limits: SandboxConfig, wall: float) -> ExecResult:
    unenforced = tuple(rep.get("unenforced") or ())
    if rep.get("oom_kills") and rep.get("harness_error"):
        return ExecResult("", "", None, error=_classify(rep, limits), wall_s=wall,
                          signal=signal.SIGKILL, unenforced=unenforced)
    if rep.get("harness_error"):
        return ExecResult("", "", None, error=f"sandbox_error: {rep['harness_error']}",
                          wall_s=wall)
    sig = rep.get("signal")
    res = ExecResult(stdout=rep.get("stdout", ""), stderr=rep.get("stderr", ""),
                     returncode=-sig if sig else rep.get("exit"),
                     timed_out=bool(rep.get("timed_out")), truncated=bool(rep.get("truncated")),
                     signal=sig, cpu_s=rep.get("cg_cpu_s",
                                               rep.get("utime", 0.0) + rep.get("stime", 0.0)),
                     maxrss_kb=int(rep.get("maxrss_kb", 0)), workdir=rep.get("workdir", ""),
                     wall_s=wall, unenforced=unenforced)
    res.error = _classify(rep, limits)
    if res.error:
        log.debug("sandbox: %s", res.error)
    return res


def run_python(code: str, limits: SandboxConfig | None = None) -> ExecResult:
    """Run `code` as `__main__` in a fresh jailed process; never raises for anything the code
    (or a broken machine) does: failures come back as `ExecResult.error`. Output is what the
    program prints (no echo of a trailing expression, as the release's executor)."""
    limits = limits or SandboxConfig()
    t0 = time.monotonic()
    try:
        mode = sandbox_mode(limits)
        if not mode.ok and not limits.unsafe:
            return ExecResult("", "", None, error=f"sandbox_error: no jail: {mode.reason}; set "
                              "eval.sandbox.unsafe=true to run model code without one")
        if not mode.ok:
            _unsafe_warning(mode.reason)
        missing = missing_cgroups(limits) if mode.ok else ()
        if missing and not limits.unsafe:
            return ExecResult("", "", None, error=f"sandbox_error: {_no_cgroup_reason(missing)}; "
                              "set eval.sandbox.unsafe=true to run without these limits")
        if missing:
            _unsafe_warning(_no_cgroup_reason(missing))
        req = _request(code, limits)

        def start(preload: Sequence[str]) -> ForkServer:
            return ForkServer(preload, mode.ok, mode.uid, mode.python, mode.sys_path,
                              tmp_root=limits.tmp_root)

        if limits.fork_server:
            key = (mode, limits.tmp_root)
            with POOL.server(key, lambda: start(DEFAULT_PRELOAD)) as srv:
                rep = srv.run(req)
        else:  # a fresh jailed interpreter for this one program (slow; for comparison)
            srv = start(())
            try:
                rep = srv.run(req)
            finally:
                srv.close()
        return _to_result(rep, limits, time.monotonic() - t0)
    except (ServerError, OSError, ValueError, RuntimeError) as e:
        return ExecResult("", str(e), None, error=f"sandbox_error: {e}",
                          wall_s=time.monotonic() - t0)
    except Exception as e:  # noqa: BLE001 - the never-raises contract
        return ExecResult("", repr(e), None, error=f"sandbox_error: {type(e).__name__}: {e}",
                          wall_s=time.monotonic() - t0)


class SandboxPool:
    """Run many programs concurrently, `limits.workers` at a time, results in input order.
    Raises `SandboxUnavailable` up front when no jail can be set up and `unsafe` is off."""

    def __init__(self, limits: SandboxConfig | None = None):
        self.limits = limits or SandboxConfig()
        mode = sandbox_mode(self.limits)
        if not mode.ok and not self.limits.unsafe:
            raise SandboxUnavailable(
                f"cannot run model-written code safely here: {mode.reason}. Install bubblewrap "
                "with user namespaces enabled, or set eval.sandbox.unsafe=true to run it "
                "without a jail (not recommended)")
        if not mode.ok:
            _unsafe_warning(mode.reason)
        missing = missing_cgroups(self.limits) if mode.ok else ()
        if missing and not self.limits.unsafe:
            raise SandboxUnavailable(
                f"cannot enforce the sandbox's limits here: {_no_cgroup_reason(missing)}. Set "
                "eval.sandbox.unsafe=true to run with per-process rlimits only")
        if missing:
            _unsafe_warning(_no_cgroup_reason(missing))
        log.info("sandbox: %s, %s", mode.reason if mode.ok else "UNSAFE (no jail)",
                 "fork server" if self.limits.fork_server else "one interpreter per program")
        self._executor = ThreadPoolExecutor(max_workers=max(1, self.limits.workers),
                                            thread_name_prefix="jz3-sandbox")

    def run_many(self, codes: Sequence[str]) -> List[ExecResult]:
        return list(self._executor.map(lambda c: run_python(c, self.limits), codes))

    def run(self, code: str) -> ExecResult:
        return run_python(code, self.limits)

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
