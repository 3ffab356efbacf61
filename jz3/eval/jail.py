"""The bubblewrap jail around the sandbox's fork server: what it binds, and whether it works here.

The jail (one `bwrap` per server): new user, mount, pid, ipc, net, uts and cgroup namespaces
(`--unshare-all --unshare-user`), `--die-with-parent`, `--new-session`; a read-only view of only
the system folders and this Python (interpreter, standard library, the environment's
site-packages) - not the project, home folders or the host's /tmp; `/proc` of its own pid
namespace, a minimal read-only `/dev`, small private tmpfs on `/tmp`, `/dev/shm` and `/sbx` (each
program gets fresh capped tmpfs and a private read-only `/dev` of its own, a seccomp filter and a
fresh session keyring, see jz3.eval.jail_server; its cgroups: jz3.eval.cgroups). As root the jail runs as a dedicated uid
(`uid_base + slot`) when that uid can run this Python, so even the jail's outer identity owns
nothing on the host.
"""

from __future__ import annotations

import logging
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import List, Optional, Tuple

log = logging.getLogger(__name__)
_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_JAIL_TMPFS = 4 << 20  # the server's own /tmp and /dev/shm (programs get their own)
_ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
        "/etc/alternatives", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf")


@dataclass(frozen=True)
class JailStatus:
    ok: bool
    reason: str  # why not, when not ok; what it runs as, when ok
    uid: Optional[int] = None  # the outer uid the jail runs as (None: this process's)
    python: str = sys.executable  # the interpreter inside the jail
    sys_path: Tuple[str, ...] = ()  # extra import paths (this env's site-packages) for it


def python_paths() -> Tuple[str, ...]:
    """Folders this interpreter needs, read-only: prefixes, stdlib, site-packages, executable."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"],
             str(Path(os.path.realpath(sys.executable)).parent)}
    paths.update(site.getsitepackages())
    for p in sys.path:  # editable installs put the project on the path: not bound (not needed)
        if p and "site-packages" in p:
            paths.add(p)
    out = sorted({os.path.realpath(p) for p in paths if p and os.path.isdir(p)})
    # drop paths inside another bound path
    return tuple(p for p in out if not any(p != q and p.startswith(q + os.sep) for q in out))


@lru_cache(maxsize=4)
def _bwrap_has_size(exe: str) -> bool:
    try:
        out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return "--size" in out.stdout + out.stderr


def bwrap_command(python: str = sys.executable, extra: Tuple[str, ...] = ()) -> List[str]:
    """The bwrap argv (without the program): every namespace, read-only system + Python.
    `extra` given = another interpreter than this one: only it and `extra` are bound."""
    exe = shutil.which("bwrap") or "bwrap"
    cmd = [exe, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session",
           "--cap-drop", "ALL", "--hostname", "jz3-sandbox", "--uid", "65534", "--gid", "65534",
           # the private /tmp and /dev/shm first: a Python (or venv) that lives under /tmp is
           # bound on top of them below instead of being hidden by them
           "--proc", "/proc", "--dev", "/dev"]
    size = ["--size", str(_JAIL_TMPFS)] if _bwrap_has_size(exe) else []  # bwrap >= 0.7
    cmd += size + ["--tmpfs", "/tmp"] + size + ["--tmpfs", "/dev/shm"]
    for p in _SYSTEM:
        if os.path.islink(p):
            cmd += ["--symlink", os.readlink(p), p]
        elif os.path.isdir(p):
            cmd += ["--ro-bind", p, p]
    for p in _ETC:
        if os.path.exists(p):
            cmd += ["--ro-bind", p, p]
    for p in (python_paths() if not extra else tuple(extra)):
        if not any(p == s or p.startswith(s + os.sep) for s in _SYSTEM):
            cmd += ["--ro-bind", p, p]
    venv_py = os.path.abspath(python)
    if not os.path.exists(venv_py):
        raise FileNotFoundError(python)
    # a venv's bin/python is a symlink whose folder must exist inside too
    cmd += ["--ro-bind", os.path.dirname(venv_py), os.path.dirname(venv_py)]
    cmd += ["--dir", "/sbx", "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/",
            "--clearenv",
            "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8",
            "--setenv", "OMP_NUM_THREADS", "1", "--setenv", "OPENBLAS_NUM_THREADS", "1",
            "--setenv", "MKL_NUM_THREADS", "1", "--setenv", "MPLBACKEND", "Agg"]
    return cmd


def as_uid(uid: Optional[int]) -> List[str]:
    """The argv prefix that runs the jail as `uid` (root only; empty when None)."""
    if uid is None:
        return []
    exe = shutil.which("setpriv") or "setpriv"
    return [exe, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all"]


_PROBE = ("import ctypes, os, sys; lib = ctypes.CDLL(None, use_errno=True); u = os.getuid(); "
          "rc = lib.unshare(0x10000000 | 0x00020000 | 0x20000000 | 0x40000000); "
          "rc or open('/proc/self/uid_map', 'w').write(f'{u} {u} 1'); "
          "sys.exit(0 if rc == 0 else 3)")


def _try(cmd: List[str]) -> Tuple[bool, str]:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return False, str(e)
    if out.returncode == 0:
        return True, ""
    if out.returncode == 3:
        return False, "the jail cannot create the per-program namespaces (nested user namespaces)"
    return False, (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]


def _candidates(explicit: Optional[str] = None):
    """`explicit` (`eval.sandbox.interpreter`, with this environment's site-packages) if set;
    else this interpreter; else (it may sit where another uid cannot go, e.g. pyenv under
    /root) a system Python of the same version with this environment's site-packages."""
    sites = tuple(p for p in site.getsitepackages() if os.path.isdir(p))
    if explicit:
        yield explicit, sites
        return
    yield sys.executable, ()
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for cand in (f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        if os.path.exists(cand) and os.path.realpath(cand) != os.path.realpath(sys.executable):
            yield cand, sites


def unreadable(path: str) -> Optional[str]:
    """The first folder on the way to `path` that this process cannot enter (or `path` itself
    when it cannot be read), None when all can."""
    cur = Path("/")
    for part in Path(os.path.abspath(path)).parts[1:]:
        if not os.access(cur, os.X_OK):
            return str(cur)
        cur = cur / part
    return None if os.access(cur, os.R_OK) else str(cur)


def _seccomp_missing() -> Optional[str]:
    import ctypes

    try:
        ctypes.CDLL("libseccomp.so.2")
        return None
    except OSError as e:
        return f"libseccomp is not installed ({e}); `apt-get install libseccomp2`"


@lru_cache(maxsize=8)
def jail_status(uid: Optional[int] = None, interpreter: Optional[str] = None) -> JailStatus:
    """Whether a jailed interpreter starts here (and can make its per-program namespaces).
    `uid`: as root, the dedicated uid to run the jail as (falls back to root's own user
    namespace, logged). `interpreter`: the only Python to try (same major.minor)."""
    if shutil.which("bwrap") is None:
        return JailStatus(False, "bubblewrap (`bwrap`) is not installed; `make system-deps` or "
                          "`apt-get install bubblewrap`")
    why_not = _seccomp_missing()
    if why_not:
        return JailStatus(False, why_not)
    users: List[Optional[int]] = [None]
    if uid is not None and os.geteuid() == 0 and shutil.which("setpriv"):
        users.insert(0, uid)
    errors: List[str] = []
    for user in users:
        for python, extra in _candidates(interpreter):
            try:
                cmd = bwrap_command(python, extra)
            except OSError as e:
                errors.append(f"{python}: cannot bind it ({e})")
                continue
            probe = _PROBE
            if extra:
                probe = ("import sys; sys.path.extend(sys.argv[1:]); import numpy, sympy; "
                         f"assert sys.version_info[:2] == {tuple(sys.version_info[:2])}; "
                         + _PROBE)
            ok, why = _try(as_uid(user) + cmd + ["--", python, "-I", "-B", "-c", probe, *extra])
            who = f"uid {user if user is not None else os.geteuid()}"
            if not ok and user is None:
                blocked = unreadable(os.path.realpath(python))
                if blocked:
                    why = f"{blocked} cannot be read or entered by {who} ({why})"
            if ok:
                return JailStatus(True, f"bwrap as {who}, {python}", user, python, extra)
            errors.append(f"{who}, {python}: {why}")
        if user is not None:
            log.warning("sandbox: the jail cannot run as the dedicated uid %d (%s); it runs "
                        "in root's own user namespace instead", user, "; ".join(errors))
    hint = ("unprivileged user namespaces are off? check `sysctl user.max_user_namespaces` and "
            "`kernel.unprivileged_userns_clone` / `kernel.apparmor_restrict_unprivileged_userns`")
    return JailStatus(False, f"bwrap fails here: {'; '.join(errors)} ({hint})")
