"""Run model-written Python in a separate, limited process.

Layers (each one holds on its own; docs/GRADING.md lists what each stops):
1. a fresh `python -I -B` process per execution in its own session/process group;
2. rlimits: CPU time, address space, file size, open files, number of processes, no core;
3. a pids cgroup per concurrent slot (fork bombs), and when root a dedicated uid per slot (so
   RLIMIT_NPROC applies, file permissions hold, and every leftover process of that uid is
   killed afterwards); a private 0700 working folder (see jz3.eval.containment);
4. `unshare -n` (an empty network namespace) when this machine allows it;
5. an audit hook in the child refusing fork/exec/subprocess/os.system, sockets, ctypes symbol
   lookup, and writes/removals/renames outside the working folder;
6. the parent enforces wall time and an output cap, then kills the whole process group.
A crash, hang or escape attempt only ever produces an `ExecResult` with `error` set.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

from jz3.config.eval import SandboxConfig
from jz3.eval.containment import (
    claim_slot,
    kill_cgroup,
    kill_group,
    kill_uid,
    network_unshare_works,
    pids_cgroup_root,
    readable_by_others,
    sandbox_interpreter,
    slot_cgroup,
    uid_drop_possible,
)
from jz3.eval.sandbox_child import BOOTSTRAP

log = logging.getLogger(__name__)
_MARK = "JZ3_SANDBOX_BLOCKED "
__all__ = ["ExecResult", "SandboxPool", "run_python", "network_unshare_works",
           "pids_cgroup_root", "sandbox_interpreter", "uid_drop_possible"]


@dataclass
class ExecResult:
    stdout: str
    stderr: str
    returncode: Optional[int]
    timed_out: bool = False
    error: Optional[str] = None  # None = ran and exited 0; else a short reason
    wall_s: float = 0.0
    truncated: bool = False
    blocked: List[str] = field(default_factory=list)
    workdir: str = ""  # the (already removed) private folder; unique per execution

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


def _child_env(workdir: str) -> dict:
    env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
           "MPLBACKEND": "Agg"}
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[k] = "1"
    return env


def _classify(res: ExecResult, limits: SandboxConfig, signum: Optional[int]) -> Optional[str]:
    if res.timed_out:
        return f"timeout: wall time over {limits.wall_time_s:g}s"
    if res.truncated:
        return f"output_limit: more than {limits.max_output_bytes} bytes of output"
    if signum == signal.SIGXCPU or signum == signal.SIGKILL and "cpu" in res.stderr.lower():
        return f"cpu_limit: more than {limits.cpu_time_s}s of CPU time"
    if signum == signal.SIGXFSZ:
        return f"file_size_limit: a file over {limits.max_file_mb} MB"
    if signum is not None:
        return f"killed by signal {signal.Signals(signum).name}"
    if res.returncode == 0:
        return None
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else f"exit status {res.returncode}"
    if "MemoryError" in last:
        return f"memory_limit: {last}"
    if res.blocked:
        return f"blocked: {res.blocked[0]}"
    return f"exception: {last[:300]}"


def _read_streams(proc: subprocess.Popen, limits: SandboxConfig, deadline: float) -> tuple:
    """Read stdout/stderr until EOF, the deadline, or the output cap; returns
    (stdout bytes, stderr bytes, timed_out, truncated)."""
    assert proc.stdout is not None and proc.stderr is not None
    bufs = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    sel = selectors.DefaultSelector()
    for stream in (proc.stdout, proc.stderr):
        os.set_blocking(stream.fileno(), False)
        sel.register(stream.fileno(), selectors.EVENT_READ)
    total, timed_out, truncated = 0, False, False
    exited_at: Optional[float] = None
    try:
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                timed_out = True
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 1.0:
                break  # a leftover grandchild holds the pipe; it is killed by the caller
            for key, _ in sel.select(timeout=min(0.2, deadline - now)):
                try:
                    chunk = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                total += len(chunk)
                room = limits.max_output_bytes - len(bufs[key.fd])
                if room > 0:
                    bufs[key.fd].extend(chunk[:room])
                if total > limits.max_output_bytes:
                    truncated = True
                    break
            if truncated:
                break
    finally:
        sel.close()
    return bytes(bufs[proc.stdout.fileno()]), bytes(bufs[proc.stderr.fileno()]), timed_out, \
        truncated


def run_python(code: str, limits: SandboxConfig | None = None) -> ExecResult:
    """Run `code` in a fresh sandboxed interpreter; never raises for anything the code does."""
    limits = limits or SandboxConfig()
    with claim_slot() as slot:
        return _run_in_slot(code, limits, slot)


def _run_in_slot(code: str, limits: SandboxConfig, slot: int) -> ExecResult:
    interp = sandbox_interpreter(limits.interpreter)
    drop = limits.drop_privileges and os.geteuid() == 0 and interp.uid_ok
    uid = limits.uid_base + slot if drop else None
    cg = slot_cgroup(slot, limits.max_procs)
    if uid is not None and not readable_by_others(limits.tmp_root or tempfile.gettempdir()):
        return ExecResult("", "", None, error=f"sandbox_error: tmp_root {limits.tmp_root} is not "
                          "searchable by other users, so the sandbox uid cannot enter it")
    workdir = tempfile.mkdtemp(prefix="jz3-sbx-", dir=limits.tmp_root)
    t0 = time.monotonic()
    try:
        Path(workdir, "main.py").write_text(code)
        if uid is not None:
            os.chown(workdir, uid, uid)
            os.chown(Path(workdir, "main.py"), uid, uid)
        os.chmod(workdir, 0o700)
        child_cfg = {"cpu_time_s": limits.cpu_time_s, "memory_mb": limits.memory_mb,
                     "wall_time_s": limits.wall_time_s,
                     "max_file_mb": limits.max_file_mb, "max_procs": limits.max_procs,
                     "workdir": workdir, "uid": uid, "audit": limits.audit_hook,
                     "sys_path": list(interp.extra_paths),
                     "cgroup_procs": str(cg / "cgroup.procs") if cg else None}
        cmd = [interp.exe, "-I", "-B", "-c", BOOTSTRAP, json.dumps(child_cfg)]
        if limits.isolate_network and network_unshare_works():
            cmd = [shutil.which("unshare") or "unshare", "-n", "--"] + cmd
        proc = subprocess.Popen(cmd, cwd=workdir, env=_child_env(workdir), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, close_fds=True)
        try:
            out, err, timed_out, truncated = _read_streams(
                proc, limits, t0 + limits.wall_time_s)
        finally:
            kill_group(proc)
            proc.wait()  # reap first: a zombie still counts as a process of the uid
            if cg is not None:
                kill_cgroup(cg)
            if uid is not None:
                kill_uid(uid)
            for s in (proc.stdout, proc.stderr):
                if s is not None:
                    s.close()
        rc = proc.returncode
        stderr = err.decode("utf-8", "replace")
        blocked = [ln[len(_MARK):].strip() for ln in stderr.splitlines() if ln.startswith(_MARK)]
        stderr = "\n".join(ln for ln in stderr.splitlines() if not ln.startswith(_MARK))
        res = ExecResult(stdout=out.decode("utf-8", "replace"), stderr=stderr,
                         returncode=rc, timed_out=timed_out, truncated=truncated,
                         blocked=blocked, workdir=workdir)
        signum = -rc if rc is not None and rc < 0 else None
        res.error = _classify(res, limits, signum)
        res.wall_s = time.monotonic() - t0
        if res.error:
            log.debug("sandbox: %s", res.error)
        return res
    except OSError as e:  # the harness itself failed to start the child: report, do not raise
        return ExecResult("", str(e), None, error=f"sandbox_error: {e}",
                          wall_s=time.monotonic() - t0)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class SandboxPool:
    """Run many programs concurrently, `limits.workers` at a time, results in input order."""

    def __init__(self, limits: SandboxConfig | None = None):
        self.limits = limits or SandboxConfig()
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
