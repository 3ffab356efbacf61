"""Per-jail cgroups for the sandbox: memory (every page the programs touch, tmpfs and memfd
included), pids, and CPU usage across all of a program's processes.

Each fork server (one program at a time) gets a cgroup of its own in every hierarchy that has
the controller, cgroup v1 (`memory`, `pids`, `cpuacct`) or v2 (`memory.max`, `pids.max`,
`cpu.stat`). Before each program the harness sets `memory` to the jail's current usage + the
program's `memory_mb` and `pids.max`; during it, it polls the CPU used (all processes) and kills
the program's pid namespace at `cpu_time_s`; after it, it reads the OOM-kill counter. The jail
cannot reach /sys, so it cannot leave or change its cgroup.

Where the cgroups are made: `<this process's cgroup>/jz3-sandbox[-<uid>]`, else (root, cgroup v2,
whose own cgroup holds processes) `<hierarchy root>/jz3-sandbox`; under v2 one folder for all
limits. An unprivileged harness gets cgroups only where that folder was delegated to it
(`delegate(uid)`, as root: `mkdir` + `chown`; under v2 the harness must also run inside the
delegated subtree, since moving a process needs write access to the common ancestor).
Tested here on cgroup v1 (memory, pids, cpuacct hierarchies); the v2 files are the documented ones.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
import time
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Tuple

log = logging.getLogger(__name__)


class Limit(str, Enum):
    """What a jail's cgroups enforce (named in a verdict's `unenforced` when missing)."""

    memory = "memory"  # memory.max / memory.limit_in_bytes: all pages, tmpfs and memfd too
    pids = "pids"  # pids.max for the whole jail
    cpu = "cpu"  # CPU of every process of a program (cpu.stat / cpuacct.usage)


_V1_NAME = {Limit.memory: "memory", Limit.pids: "pids", Limit.cpu: "cpuacct"}
_PROBE_FILE = {  # (v1, v2) file that must be writable (limits) or readable (cpu) in a jail dir
    Limit.memory: ("memory.limit_in_bytes", "memory.max"),
    Limit.pids: ("pids.max", "pids.max"),
    Limit.cpu: ("cpuacct.usage", "cpu.stat"),
}


@dataclass(frozen=True)
class Base:
    path: Path  # the folder jail cgroups are made in
    v2: bool


def _mounts() -> Tuple[Dict[str, Path], Optional[Path]]:
    """v1 controller -> mount point, and the v2 mount point."""
    v1: Dict[str, Path] = {}
    v2: Optional[Path] = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) < 4:
                continue
            if parts[2] == "cgroup2" and v2 is None:
                v2 = Path(parts[1])
            elif parts[2] == "cgroup":
                for opt in parts[3].split(","):
                    v1.setdefault(opt, Path(parts[1]))
    return v1, v2


def _own() -> Dict[str, str]:
    """Hierarchy ('' = v2, else its v1 controllers, comma-joined) -> this process's cgroup."""
    out: Dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, ctrls, path = line.split(":", 2)
            out[ctrls] = path
    return out


def _base_name(uid: int) -> str:
    return "jz3-sandbox" if uid == 0 else f"jz3-sandbox-{uid}"


def _candidates(limit: Limit) -> List[Base]:
    v1, v2 = _mounts()
    own = _own()
    name = _base_name(os.geteuid())
    out: List[Base] = []
    ctrl = _V1_NAME[limit]
    if ctrl in v1:
        mount = v1[ctrl]
        rel = next((p for k, p in own.items() if ctrl in k.split(",")), "/")
        out += [Base(mount / rel.lstrip("/") / name, False), Base(mount / name, False)]
    elif v2 is not None:
        enabled = limit == Limit.cpu or limit.value in _read(v2 / "cgroup.controllers").split()
        if enabled:
            rel = own.get("", "/")
            out += [Base(v2 / rel.lstrip("/") / name, True), Base(v2 / name, True)]
    seen, uniq = set(), []
    for b in out:
        if b.path not in seen:
            seen.add(b.path)
            uniq.append(b)
    return uniq


def _read(p: Path) -> str:
    try:
        return p.read_text()
    except OSError:
        return ""


def _usable(base: Base, limit: Limit) -> bool:
    """Make `base` (if we may) and check a child of it gets the controller's files."""
    try:
        base.path.mkdir(exist_ok=True)
        if base.v2 and limit != Limit.cpu:
            for d in (base.path.parent, base.path):
                with contextlib.suppress(OSError):
                    (d / "cgroup.subtree_control").write_text(f"+{limit.value}")
        probe = Path(tempfile.mkdtemp(prefix="probe-", dir=base.path))
        try:
            f = probe / _PROBE_FILE[limit][int(base.v2)]
            ok = f.exists() and os.access(f, os.W_OK if limit != Limit.cpu else os.R_OK)
        finally:
            probe.rmdir()
        if not ok:
            _rmdir(base.path)
        return ok
    except OSError:
        return False


def _rmdir(path: Path) -> None:
    """Remove an empty cgroup folder (left alone while it holds jails or processes)."""
    with contextlib.suppress(OSError):
        path.rmdir()


@lru_cache(maxsize=4)
def bases(uid: Optional[int] = None) -> Dict[Limit, Base]:
    """Where this process can make jail cgroups, per limit (missing: none can be made)."""
    del uid  # the cache key: the effective uid the lookup ran as
    out: Dict[Limit, Base] = {}
    v2: Dict[Limit, List[Base]] = {}
    for limit in Limit:
        cands = _candidates(limit)
        if cands and cands[0].v2:
            v2[limit] = cands
            continue
        for base in cands:
            if _usable(base, limit):
                out[limit] = base
                break
    # cgroup v2 is one hierarchy: its limits must share one folder (the first that has most)
    paths = [b for cands in v2.values() for b in cands]
    best, best_n = None, 0
    for base in dict.fromkeys(paths):
        n = sum(base in v2[limit] and _usable(base, limit) for limit in v2)
        if n > best_n:
            best, best_n = base, n
    if best is not None:
        out.update({limit: best for limit in v2 if _usable(best, limit)})
    for base in set(out.values()):
        _sweep(base.path)
    return out


def available() -> Dict[Limit, Base]:
    return bases(os.geteuid())


def missing() -> Tuple[Limit, ...]:
    """The limits no cgroup can enforce here."""
    have = available()
    return tuple(limit for limit in Limit if limit not in have)


def delegate(uid: int) -> List[Path]:
    """As root: make `<own cgroup>/jz3-sandbox-<uid>` in each hierarchy and give it to `uid`,
    so that a harness running as `uid` (started from here) gets cgroups of its own."""
    made: List[Path] = []
    for limit in Limit:
        v1, v2 = _mounts()
        own = _own()
        ctrl = _V1_NAME[limit]
        if ctrl in v1:
            rel = next((p for k, p in own.items() if ctrl in k.split(",")), "/")
            path = v1[ctrl] / rel.lstrip("/") / _base_name(uid)
        elif v2 is not None:
            path = v2 / own.get("", "/").lstrip("/") / _base_name(uid)
        else:
            continue
        if path in made:
            continue
        with contextlib.suppress(OSError):
            path.mkdir(exist_ok=True)
            for p in (path, *path.iterdir()):
                if p.is_dir() or p.name in ("cgroup.procs", "tasks", "cgroup.subtree_control"):
                    os.chown(p, uid, uid)
            made.append(path)
    return made


def _sweep(root: Path, min_age_s: float = 300.0) -> None:
    """Remove empty jail cgroups left by killed harnesses (older than `min_age_s`)."""
    now = time.time()
    for cg in root.glob("jail-*"):
        with contextlib.suppress(OSError):
            if now - cg.stat().st_mtime > min_age_s and not _read(cg / "cgroup.procs").strip():
                cg.rmdir()


@dataclass
class JailCgroups:
    """One jail's cgroups (a folder per hierarchy; one for all under cgroup v2)."""

    dirs: Dict[Limit, Path] = field(default_factory=dict)
    v2: Dict[Limit, bool] = field(default_factory=dict)
    memory_max: Optional[int] = None  # the memory limit set for the current program (bytes)

    @classmethod
    def create(cls) -> JailCgroups:
        cg = cls()
        made: Dict[Path, Path] = {}
        for limit, base in available().items():
            if base.path not in made:
                try:
                    made[base.path] = _new_jail_dir(base.path)
                except OSError as e:
                    log.warning("sandbox: no %s cgroup for the jail (%s)", limit.value, e)
                    continue
            cg.dirs[limit] = made[base.path]
            cg.v2[limit] = base.v2
        return cg

    @property
    def unenforced(self) -> Tuple[Limit, ...]:
        return tuple(limit for limit in Limit if limit not in self.dirs)

    def folders(self) -> List[Path]:
        return sorted(set(self.dirs.values()))

    def enter_argv(self) -> List[str]:
        """The argv prefix that moves the command into every folder before it starts."""
        dirs = [str(d) for d in self.folders()]
        if not dirs:
            return []
        script = ('for d in "$@"; do [ "$d" = -- ] && break; echo $$ > "$d/cgroup.procs" || '
                  'exit 111; shift; done; shift; exec "$@"')
        return ["/bin/sh", "-c", script, "sh", *dirs, "--"]

    # ------------------------------------------------------------------ per program
    def set_limits(self, memory_mb: int, pids: int) -> None:
        """`pids.max` = `pids`; memory = what the jail holds now + `memory_mb`."""
        d = self.dirs.get(Limit.pids)
        if d is not None:
            _write(d / "pids.max", str(pids))
        d = self.dirs.get(Limit.memory)
        if d is not None:
            self.memory_max = self.memory_bytes() + memory_mb * (1 << 20)
            if self.v2[Limit.memory]:
                _write(d / "memory.max", str(self.memory_max))
                if (d / "memory.swap.max").exists():
                    _write(d / "memory.swap.max", "0")
            else:
                _write(d / "memory.limit_in_bytes", str(self.memory_max))

    def memory_bytes(self) -> int:
        """What the jail's cgroup holds now (every page: anonymous, tmpfs, memfd, cache)."""
        d = self.dirs.get(Limit.memory)
        if d is None:
            return 0
        name = "memory.current" if self.v2[Limit.memory] else "memory.usage_in_bytes"
        return int(_read(d / name).strip() or 0)

    def at_memory_limit(self, slack: int = 2 << 20) -> bool:
        """Usage within `slack` of the limit: the kernel is reclaiming, an OOM kill is next."""
        return self.memory_max is not None and self.memory_bytes() >= self.memory_max - slack

    def cpu_s(self) -> Optional[float]:
        """CPU seconds used by everything in the jail so far (None: not accounted)."""
        d = self.dirs.get(Limit.cpu)
        if d is None:
            return None
        if self.v2[Limit.cpu]:
            for line in _read(d / "cpu.stat").splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
            return None
        text = _read(d / "cpuacct.usage").strip()
        return int(text) / 1e9 if text else None

    def oom_kills(self) -> int:
        d = self.dirs.get(Limit.memory)
        if d is None:
            return 0
        name = "memory.events" if self.v2[Limit.memory] else "memory.oom_control"
        for line in _read(d / name).splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def kill_programs(self, depth: int) -> int:
        """SIGKILL every process in the jail at pid-namespace depth >= `depth` (the programs'
        namespaces, below the server's); returns how many were signalled."""
        n = 0
        for pid in self._procs():
            ns = ""
            for line in _read(Path(f"/proc/{pid}/status")).splitlines():
                if line.startswith("NSpid:"):
                    ns = line
            if len(ns.split()) - 1 >= depth:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                    n += 1
        return n

    def _procs(self) -> List[int]:
        pids = set()
        for d in self.folders():
            pids.update(int(x) for x in _read(d / "cgroup.procs").split())
        return sorted(pids)

    def remove(self) -> None:
        """SIGKILL whatever is left, then remove the folders."""
        for d in self.folders():
            for _ in range(100):
                pids = [int(x) for x in _read(d / "cgroup.procs").split()]
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.01)
            _rmdir(d)
            _rmdir(d.parent)  # the base too, once no jail is left in it (made again on demand)
        self.dirs.clear()


def _new_jail_dir(base: Path, tries: int = 5) -> Path:
    """A fresh `jail-*` folder in `base`, which another jail's removal may take away (remade)."""
    for _ in range(tries - 1):
        with contextlib.suppress(FileNotFoundError):
            base.mkdir(exist_ok=True)
            return Path(tempfile.mkdtemp(prefix="jail-", dir=base))
    base.mkdir(exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="jail-", dir=base))


def _write(p: Path, text: str) -> None:
    try:
        p.write_text(text)
    except OSError as e:
        log.warning("sandbox: cannot write %s (%s)", p, e)
