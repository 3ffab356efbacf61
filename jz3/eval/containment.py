"""OS-level containment for the sandbox: slots (cross-process), per-slot pids cgroups and
uids, the interpreter a dropped uid can run, network namespaces, and killing what is left."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

log = logging.getLogger(__name__)
_LOCK_DIR = Path(tempfile.gettempdir()) / "jz3-sandbox-slots"
_MAX_SLOTS = 256


@lru_cache(maxsize=1)
def network_unshare_works() -> bool:
    """Whether `unshare -n` can create an empty network namespace here."""
    exe = shutil.which("unshare")
    if not exe:
        return False
    try:
        return subprocess.run([exe, "-n", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@contextlib.contextmanager
def claim_slot() -> Iterator[int]:
    """A slot number free across processes (an flock'd file), released on exit."""
    _LOCK_DIR.mkdir(parents=True, exist_ok=True)
    while True:
        for slot in range(_MAX_SLOTS):
            f = open(_LOCK_DIR / f"slot-{slot}.lock", "w")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                continue
            try:
                yield slot
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
                f.close()
            return
        time.sleep(0.05)


def readable_by_others(path: str) -> bool:
    """Every folder from / down to `path` is searchable by other users (so a dropped uid can
    still import the interpreter's standard library)."""
    p = Path(path).resolve()
    for d in [p, *p.parents]:
        with contextlib.suppress(OSError):
            if not os.stat(d).st_mode & 0o001:
                return False
    return True


@dataclass(frozen=True)
class Interpreter:
    """The Python the sandbox runs: `exe`, extra `sys.path` entries, and whether a dropped uid
    can use it (its stdlib and the extra paths are readable by other users)."""

    exe: str
    extra_paths: Tuple[str, ...] = ()
    uid_ok: bool = False


def _probe(exe: str) -> Optional[Tuple[Tuple[int, int], str]]:
    code = "import sys, sysconfig; print(sys.version_info[0], sys.version_info[1]); " \
           "print(sysconfig.get_paths()['stdlib'])"
    try:
        out = subprocess.run([exe, "-I", "-c", code], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split("\n")
    if out.returncode != 0 or len(lines) < 2:
        return None
    major, minor = (int(x) for x in lines[0].split())
    return (major, minor), lines[1].strip()


@lru_cache(maxsize=4)
def sandbox_interpreter(explicit: Optional[str] = None) -> Interpreter:
    """This interpreter when a dropped uid can read it; else, as root, a system Python of the
    same version plus this environment's site-packages (so sympy/numpy still import); else
    this interpreter without a uid drop."""
    import site
    import sysconfig

    if explicit:
        probe = _probe(explicit)
        ok = probe is not None and readable_by_others(probe[1])
        return Interpreter(explicit, tuple(site.getsitepackages()), ok)
    if os.geteuid() != 0:
        return Interpreter(sys.executable)
    if readable_by_others(sysconfig.get_paths()["stdlib"]) and readable_by_others(sys.executable):
        return Interpreter(sys.executable, (), True)
    sites = tuple(p for p in site.getsitepackages() if Path(p).is_dir())
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for cand in (f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        if not Path(cand).exists() or not all(readable_by_others(p) for p in sites):
            continue
        probe = _probe(cand)
        if probe and probe[0] == sys.version_info[:2] and readable_by_others(probe[1]):
            log.info("sandbox: running %s (+ %s) as a dedicated uid", cand, ", ".join(sites))
            return Interpreter(cand, sites, True)
    log.warning("sandbox: no interpreter readable by other users; running as root with the "
                "pids cgroup + audit hook + network namespace guards")
    return Interpreter(sys.executable)


def uid_drop_possible() -> bool:
    return os.geteuid() == 0 and sandbox_interpreter().uid_ok


def _pids_cgroup_root() -> Optional[Path]:
    """A writable pids cgroup (v1 `pids` hierarchy or v2 unified) for the sandbox slots."""
    cands = [Path("/sys/fs/cgroup/pids")]
    unified = Path("/sys/fs/cgroup/cgroup.controllers")
    with contextlib.suppress(OSError):
        if "pids" in unified.read_text().split():
            cands.append(Path("/sys/fs/cgroup"))
    for base in cands:
        root = base / "jz3-sandbox"
        try:
            root.mkdir(exist_ok=True)
            if base == Path("/sys/fs/cgroup"):
                with contextlib.suppress(OSError):
                    (base / "cgroup.subtree_control").write_text("+pids")
            probe = root / "probe"
            probe.mkdir(exist_ok=True)
            ok = (probe / "pids.max").exists()
            probe.rmdir()
            if ok:
                return root
        except OSError:
            continue
    return None


_CGROUP_ROOT: Optional[Path] = None
_CGROUP_CHECKED = False
_CGROUP_LOCK = threading.Lock()


def pids_cgroup_root() -> Optional[Path]:
    global _CGROUP_ROOT, _CGROUP_CHECKED
    with _CGROUP_LOCK:
        if not _CGROUP_CHECKED:
            _CGROUP_ROOT, _CGROUP_CHECKED = _pids_cgroup_root(), True
        return _CGROUP_ROOT


def slot_cgroup(slot: int, max_procs: int) -> Optional[Path]:
    root = pids_cgroup_root()
    if root is None:
        return None
    cg = root / f"slot-{slot}"
    try:
        cg.mkdir(exist_ok=True)
        (cg / "pids.max").write_text(str(max_procs))
    except OSError as e:
        log.warning("sandbox: cannot set up %s (%s)", cg, e)
        return None
    return cg


def _kill_until_empty(list_pids: Callable[[], Optional[List[int]]], rounds: int) -> int:
    """SIGKILL what `list_pids()` returns until it is empty (or None); returns how many."""
    killed = 0
    for _ in range(rounds):
        pids = list_pids()
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        time.sleep(0.01)
    return killed


def kill_cgroup(cg: Path, rounds: int = 100) -> int:
    """SIGKILL every process in the slot's cgroup until it is empty."""

    def pids() -> Optional[List[int]]:
        try:
            return [int(x) for x in (cg / "cgroup.procs").read_text().split()]
        except OSError:
            return None

    return _kill_until_empty(pids, rounds)


def _pids_of_uid(uid: int) -> List[int]:
    """Live (non-zombie) processes whose real uid is `uid`."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/status") as f:
                for line in f:
                    if line.startswith("State:") and line.split()[1] in ("Z", "X"):
                        break
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            pids.append(int(d))
                        break
        except (OSError, ValueError):
            continue
    return pids


def kill_uid(uid: int, rounds: int = 50) -> int:
    """SIGKILL every process of the sandbox uid until none is left; returns how many."""
    return _kill_until_empty(lambda: _pids_of_uid(uid), rounds)


def kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
