"""The sandbox's second line: keyring, seccomp (syscall by syscall), a private read-only /dev,
cgroup memory/CPU accounting, an init that ignores signals, verdicts not taken from stderr.
Each program here broke the first version of the jail; run as this user (root in CI) and as
`nobody` (`setpriv`, with cgroups delegated to it), audit hook off, effects checked from outside.

Run one batch by hand: `python -m tests.test_sandbox_layers` (prints a JSON object last).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOBODY = 65534
KEY_DESC, KEY_VALUE = b"jz3-harness-key", b"harness-secret"
_SYSCALL = """
import ctypes, json, os
lib = ctypes.CDLL(None, use_errno=True)
lib.syscall.restype = ctypes.c_long
buf = ctypes.create_string_buffer(256)
def call(nr, *args):
    ctypes.set_errno(0)
    r = lib.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a
                                          for a in args])
    if r == 0 and nr == 56:  # a clone that worked: this is the child
        os._exit(0)
    return 0 if r >= 0 else ctypes.get_errno()
"""
# name -> the call (x86_64 numbers); every one must fail with EPERM (clone3: ENOSYS)
SYSCALLS = {
    "keyctl": "call(250, 0, -3, 1)",  # KEYCTL_GET_KEYRING_ID of the session keyring
    "add_key": "call(248, b'user', b'jz3-evil', b'x', 1, -3)",
    "request_key": "call(249, b'user', b'jz3-harness-key', None, 0)",
    "io_uring_setup": "call(425, 4, buf)",
    "userfaultfd": "call(323, 0)",
    "perf_event_open": "(buf.raw, ctypes.memmove(buf, (128).to_bytes(4, 'little') * 2, 8), "
                       "call(298, buf, 0, -1, -1, 0))[-1]",
    "bpf": "call(321, 0, buf, 72)",
    "unshare_user": "call(272, 0x10000000)",
    "unshare_mount": "call(272, 0x00020000)",
    "clone_newuser": "call(56, 0x10000000 | 17, 0, 0, 0, 0)",
    "clone_newnet": "call(56, 0x40000000 | 17, 0, 0, 0, 0)",
    "clone3": "call(435, buf, 88)",
    "mount": "call(165, b'none', b'/tmp', b'tmpfs', 0, None)",
    "umount2": "call(166, b'/tmp', 2)",
    "setns": "call(308, 0, 0)",
    "ptrace": "call(101, 16, 1, 0, 0)",  # PTRACE_ATTACH to init
    "socket_vsock": "call(41, 40, 1, 0)",
    "socket_netlink": "call(41, 16, 3, 0)",
    "socket_packet": "call(41, 17, 3, 0)",
}


def _fill(folder: str, mb: int) -> str:
    """Write `mb` MB into `folder` in 8 MB files; prints `refused <errno> <MB written>`."""
    return (f"n = 0\ntry:\n    for i in range({mb // 8}):\n"
            f"        with open('{folder}/big%d' % i, 'wb') as f:\n"
            "            f.write(b'x' * (8 << 20))\n        n += 8\n"
            "except OSError as e:\n    print('refused', e.errno, n)")


def programs(tag: str) -> Dict[str, str]:
    """name -> program (`tag` names what they try to leave behind)."""
    calls = ", ".join(f"{k!r}: {v}" for k, v in SYSCALLS.items())
    return {
        "syscalls": _SYSCALL + f"print(json.dumps({{{calls}}}))",
        # keys: find the harness's key in the session keyring, read it, overwrite it, add one
        "keyring": (_SYSCALL + "kid = lib.syscall(ctypes.c_long(250), ctypes.c_long(10), "
                    "ctypes.c_long(-3), b'user', b'jz3-harness-key', ctypes.c_long(0))\n"
                    "out = {'search': 0 if kid > 0 else ctypes.get_errno()}\n"
                    "out['update'] = call(250, 2, kid, b'pwned', 5) if kid > 0 else -1\n"
                    "out['add'] = call(248, b'user', b'" + tag + "', b'x', 1, -3)\n"
                    "print(json.dumps(out))"),
        # /dev: plant a file, replace /dev/stdout, fill it; then the standard nodes still work
        "dev_write": (f"import os\nres = []\nfor f in ('/dev/{tag}', '/dev/stdout.new'):\n"
                      "    try:\n        open(f, 'w').write('x')\n        res.append('made')\n"
                      "    except OSError as e:\n        res.append(e.errno)\n"
                      "try:\n    os.remove('/dev/stdout')\n    res.append('made')\n"
                      "except OSError as e:\n    res.append(e.errno)\n"
                      "open('/dev/null', 'w').write('x')\n"
                      "assert len(open('/dev/urandom', 'rb').read(8)) == 8\n"
                      f"open('/dev/shm/{tag}', 'w').write('x')\nprint(res)"),
        "dev_fill": _fill("/dev/shm", 300),
        "dev_look": ("import os\nprint(sorted(os.listdir('/dev')), os.listdir('/dev/shm'))"),
        # memory outside the address space: a memfd (shared memory) and a nested-ns tmpfs
        # (files of 8 MB each: the file-size rlimit is 16 MB)
        "memfd": ("import os\nfds, b = [], b'x' * (8 << 20)\nfor _ in range(75):\n"
                  "    fds.append(os.memfd_create('x'))\n    os.write(fds[-1], b)\n"
                  "print('made')"),
        "tmpfs_fill": _fill("/tmp", 600),
        "nested_tmpfs": ("import ctypes, os\nlib = ctypes.CDLL(None, use_errno=True)\n"
                         "u = os.getuid()\nlib.prctl(4, 1, 0, 0, 0)\n"
                         "assert lib.unshare(0x10000000 | 0x00020000) == 0, ctypes.get_errno()\n"
                         "open('/proc/self/uid_map', 'w').write(f'0 {u} 1')\n"
                         "assert lib.mount(b'none', b'/tmp', b'tmpfs', 0, b'size=1g') == 0\n"
                         + _fill("/tmp", 300).replace("print('refused'", "print('stopped'")
                         + "\nprint('made')"),
        # CPU across processes: three children of ~1.4 s each (each under its own RLIMIT_CPU)
        "cpu_children": ("import os, time\nfor _ in range(3):\n    if os.fork() == 0:\n"
                         "        t = time.process_time()\n"
                         "        while time.process_time() - t < 1.4:\n            pass\n"
                         "        os._exit(0)\nfor _ in range(3):\n    os.wait()\nprint('made')"),
        "cpu_timeout": "import time\nt = time.time()\nwhile True:\n    pass",
        # signals to init
        "signal_init": ("import os, signal, time\nfor s in signal.valid_signals():\n"
                        "    if s not in (signal.SIGKILL, signal.SIGSTOP):\n        try:\n"
                        "            os.kill(1, s)\n        except OSError:\n            pass\n"
                        "time.sleep(0.3)\nprint('alive')"),
        "forged_memory_verdict": "import sys\nprint('MemoryError', file=sys.stderr)\nsys.exit(1)",
    }


def _join_keyring_with_key() -> int:
    """This process: a new session keyring holding the harness's key (returns its id)."""
    lib = ctypes.CDLL(None, use_errno=True)
    lib.syscall.restype = ctypes.c_long
    assert lib.syscall(ctypes.c_long(250), ctypes.c_long(1), None) > 0, ctypes.get_errno()
    kid = lib.syscall(ctypes.c_long(248), b"user", KEY_DESC, KEY_VALUE,
                      ctypes.c_long(len(KEY_VALUE)), ctypes.c_long(-3))
    assert kid > 0, os.strerror(ctypes.get_errno())
    return kid


def _key_value(kid: int) -> bytes:
    lib = ctypes.CDLL(None, use_errno=True)
    lib.syscall.restype = ctypes.c_long
    buf = ctypes.create_string_buffer(256)
    n = lib.syscall(ctypes.c_long(250), ctypes.c_long(11), ctypes.c_long(kid), buf,
                    ctypes.c_long(256))
    return buf.raw[:n] if n >= 0 else b""


def _session_keys() -> int:
    """How many keys the session keyring holds (the harness's own key = 1)."""
    lib = ctypes.CDLL(None, use_errno=True)
    lib.syscall.restype = ctypes.c_long
    buf = ctypes.create_string_buffer(4096)
    n = lib.syscall(ctypes.c_long(250), ctypes.c_long(11), ctypes.c_long(-3), buf,
                    ctypes.c_long(4096))
    return n // 4 if n >= 0 else -1


def run_batch(tag: str) -> Dict[str, dict]:
    """As a harness holding a key: every program through `SandboxPool` (hook off)."""
    from dataclasses import asdict, replace

    from jz3.config.eval import SandboxConfig
    from jz3.eval.sandbox import SandboxPool

    kid = _join_keyring_with_key()
    limits = SandboxConfig(wall_time_s=8.0, cpu_time_s=2, memory_mb=256, max_procs=16,
                           audit_hook=False, workers=2)
    progs = programs(tag)
    special = {"cpu_timeout": replace(limits, wall_time_s=3.0, cpu_time_s=30)}
    in_turn = ("dev_write", "dev_look")  # one after the other: on the same fork server
    with SandboxPool(limits) as pool:
        names = [k for k in progs if k not in special and k not in in_turn]
        out = {k: asdict(r) for k, r in zip(names, pool.run_many([progs[k] for k in names]),
                                            strict=True)}
        for k in in_turn:
            out[k] = asdict(pool.run(progs[k]))
        for k, lim in special.items():
            with SandboxPool(lim) as p2:
                out[k] = asdict(p2.run(progs[k]))
    out["harness"] = {"key_value": _key_value(kid).decode(), "session_keys": _session_keys(),
                      "uid": os.geteuid()}
    return out


def _shm_used_mb() -> float:
    st = os.statvfs("/dev/shm")
    return (st.f_blocks - st.f_bfree) * st.f_frsize / 2**20


def _check(res: Dict[str, dict], tag: str, shm_before: float) -> None:
    # 1. keys: the program cannot find, change or add a key; the harness's key is intact
    assert res["harness"]["key_value"] == KEY_VALUE.decode()
    assert res["harness"]["session_keys"] == 1
    keys = json.loads(res["keyring"]["stdout"])
    assert keys == {"search": errno.EPERM, "update": -1, "add": errno.EPERM}, keys
    # 2. seccomp, syscall by syscall
    got = json.loads(res["syscalls"]["stdout"])
    want = {k: errno.ENOSYS if k == "clone3" else errno.EPERM for k in SYSCALLS}
    assert got == want, {k: (os.strerror(v) if v else "ALLOWED") for k, v in got.items()
                         if v != want[k]}
    # 3. /dev: read-only, standard nodes only, nothing of another program's
    r = res["dev_write"]
    assert r["error"] is None and r["stdout"].strip() == f"[{errno.EROFS}, {errno.EROFS}, " \
                                                         f"{errno.EROFS}]", r
    look = res["dev_look"]["stdout"].strip()
    assert look == ("['fd', 'full', 'null', 'random', 'shm', 'stderr', 'stdin', 'stdout', "
                    "'urandom', 'zero'] []"), look
    assert res["dev_fill"]["stdout"].startswith(f"refused {errno.ENOSPC}"), res["dev_fill"]
    # 4. memory: a memfd is counted (cgroup OOM kill); a tmpfs is capped; nothing stays behind
    assert res["memfd"]["error"].startswith("memory_limit"), res["memfd"]
    assert "made" not in res["memfd"]["stdout"]
    assert res["tmpfs_fill"]["stdout"].startswith(f"refused {errno.ENOSPC}"), \
        res["tmpfs_fill"]
    assert int(res["tmpfs_fill"]["stdout"].split()[2]) <= 64
    r = res["nested_tmpfs"]  # no user namespace inside: no tmpfs of the program's own
    assert r["error"] == f"exception: AssertionError: {errno.EPERM}", r
    assert _shm_used_mb() < shm_before + 50
    # 4. CPU across processes, and a timed-out program's CPU
    r = res["cpu_children"]
    assert r["error"].startswith("cpu_limit"), r
    assert r["cpu_s"] >= 1.9 and "made" not in r["stdout"], r
    r = res["cpu_timeout"]
    assert r["timed_out"] and r["cpu_s"] > 0.05, r  # (the old jail said 0.0; a loaded box
    # gives a spinning program only a share of its 3 s)
    # 5. init ignores signals; a MemoryError line on stderr is not a memory verdict
    assert res["signal_init"]["error"] is None and res["signal_init"]["stdout"] == "alive\n", \
        res["signal_init"]
    assert res["forged_memory_verdict"]["error"] == "exception: MemoryError"
    for k, r in res.items():
        assert k == "harness" or r["unenforced"] == [], (k, r["unenforced"])
    assert not list(Path("/dev/shm").glob(f"{tag}*")) and not list(Path("/tmp").glob(f"{tag}*"))


def _run_as(uid: int | None, tag: str) -> Dict[str, dict]:
    cmd = [sys.executable, "-m", "tests.test_sandbox_layers", tag]
    if uid is not None:
        cmd = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] + cmd
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/",
                              "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_layers_as_this_user():
    tag = f"jz3lay{os.getpid()}{int(time.time())}"
    before = _shm_used_mb()
    _check(_run_as(None, tag), tag, before)


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root to drop to an unprivileged user")
def test_layers_as_an_unprivileged_user():
    from tests.sandbox_delegation import delegated

    with delegated(NOBODY) as folders:
        assert folders, "no cgroup could be delegated to nobody"
        tag = f"jz3layn{os.getpid()}{int(time.time())}"
        before = _shm_used_mb()
        res = _run_as(NOBODY, tag)
    assert res["harness"]["uid"] == NOBODY
    _check(res, tag, before)


def test_no_cgroup_refuses_unless_unsafe(monkeypatch):
    """Without cgroups the jail refuses; `unsafe` runs jailed and the verdict names what is
    not enforced."""
    from dataclasses import replace

    from jz3.config.eval import SandboxConfig
    from jz3.eval import cgroups
    from jz3.eval import sandbox as sandbox_mod
    from jz3.eval.forkserver import POOL

    monkeypatch.setattr(cgroups, "available", lambda: {})
    limits = SandboxConfig(wall_time_s=6.0, cpu_time_s=2, workers=1, tmp_root="/nocg")
    with pytest.raises(sandbox_mod.SandboxUnavailable, match="no cgroup for memory, pids, cpu"):
        sandbox_mod.SandboxPool(limits)
    assert sandbox_mod.run_python("print(1)", limits).error.startswith("sandbox_error: no cgroup")
    monkeypatch.setattr(sandbox_mod, "_warned_unsafe", True)
    r = sandbox_mod.run_python("import os\nprint(os.listdir('/sbx'))", replace(limits, unsafe=True))
    POOL.close()
    assert r.ok and r.workdir.startswith("/sbx/"), r  # still jailed
    assert r.unenforced == ("memory", "pids", "cpu")



@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root to drop to an unprivileged user")
def test_an_unreadable_interpreter_folder_is_named():
    """A Python under a 0700 home: the jail's error names the folder nobody cannot enter."""
    tmp_path = Path(tempfile.mkdtemp(prefix="jz3-home-"))
    home = tmp_path / "home"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "python").write_text("")
    tmp_path.chmod(0o755)
    home.chmod(0o700)
    code = ("import sys; from jz3.eval.jail import unreadable; "
            "print(unreadable(sys.argv[1]), unreadable('/usr/bin/env'))")
    out = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                          sys.executable, "-c", code, str(home / "bin" / "python")], cwd=ROOT,
                         capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    shutil.rmtree(tmp_path)
    assert out.stdout.split() == [str(home), "None"], out.stderr[-2000:]


if __name__ == "__main__":
    print(json.dumps(run_batch(sys.argv[1] if len(sys.argv) > 1 else "jz3lay")))
