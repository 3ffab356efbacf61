"""Hostile programs against the sandbox, as this user (root in CI) and as an unprivileged user
(`setpriv` to nobody), with the audit hook OFF: only the OS layers count. After each batch the
host is checked from outside: nothing in /tmp or /dev/shm, the victim folder (a stand-in for the
user's project, owned by the harness's user) untouched, the 127.0.0.1 listener never reached,
no process left behind, and verdicts not forgeable.

Run one batch by hand: `python -m tests.test_sandbox_escapes VICTIM_DIR PORT TAG`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Dict

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOBODY = 65534


def attacks(victim: str, port: int, tag: str) -> Dict[str, str]:
    """name -> program. `tag` names every file an attack tries to leave on the host."""
    v = victim
    return {
        "shm_open": ("import _posixshmem, os\n"
                     f"fd = _posixshmem.shm_open('/{tag}-shm', os.O_CREAT | os.O_RDWR, 0o666)\n"
                     "os.ftruncate(fd, 8 << 20)\nos.write(fd, b'x' * 4096)\nprint('made')"),
        "mkfifo_tmp": f"import os\nos.mkfifo('/tmp/{tag}-fifo')\nprint('made')",
        "sqlite_tmp": (f"import sqlite3\ndb = sqlite3.connect('/tmp/{tag}.db')\n"
                       "db.execute('create table t(x)')\ndb.commit()\nprint('made')"),
        "write_tmp": f"open('/tmp/{tag}.txt', 'w').write('x')\nprint('made')",
        "write_dev_shm": f"open('/dev/shm/{tag}.txt', 'w').write('x')\nprint('made')",
        "network": ("import socket\ns = socket.socket()\ns.settimeout(2)\n"
                    f"s.connect(('127.0.0.1', {port}))\ns.sendall(b'{tag}')\nprint('made')"),
        "write_victim": f"open({v + '/evil.txt'!r}, 'w').write('x')\nprint('made')",
        "delete_victim": f"import os\nos.remove({v + '/keep.txt'!r})\nprint('made')",
        "rmtree_victim_parent": (f"import shutil\nshutil.rmtree({str(Path(v).parent)!r})\n"
                                 "print('made')"),
        "rewrite_journal": (f"import sqlite3\ndb = sqlite3.connect({v + '/journal.sqlite'!r})\n"
                            "db.execute(\"update calls set completion='pwned'\")\ndb.commit()\n"
                            "print('made')"),
        "write_project": (f"open({str(ROOT / (tag + '.txt'))!r}, 'w').write('x')\n"
                          "print('made')"),
        "write_jail_root": f"open('/{tag}.txt', 'w').write('x')\nprint('made')",
        "read_project": f"print(open({str(ROOT / 'setup.py')!r}).read()[:10])\nprint('made')",
        "subprocess_touch": ("import subprocess\n"
                             f"subprocess.run(['touch', {v + '/flag'!r}], check=True)\n"
                             "print('made')"),
        "os_system": f"import os\nassert os.system('echo x > {v}/flag2') == 0\nprint('made')",
        "kill_everything": ("import os, signal\nn = 0\nfor pid in range(1, 5000):\n"
                            "    if pid == os.getpid():\n        continue\n"
                            "    try:\n        os.kill(pid, signal.SIGKILL)\n        n += 1\n"
                            "    except OSError:\n        pass\nprint('made', n)"),
        "see_processes": "import os\nprint([p for p in os.listdir('/proc') if p.isdigit()])",
        "fork_bomb": ("import os\nwhile True:\n    try:\n        os.fork()\n"
                      "    except OSError:\n        pass"),
        "forged_block_verdict": ("import sys\nprint('JZ3_SANDBOX_BLOCKED os.fork', "
                                 "file=sys.stderr)\nprint('42')"),
        "forged_cpu_verdict": ("import os, signal, sys\nprint('cpu_limit: cpu time', "
                               "file=sys.stderr)\nsys.stderr.flush()\n"
                               "os.kill(os.getpid(), signal.SIGKILL)"),
        "forged_report": ('import sys\nsys.stdout.write(\'{"id": "x", "exit": 0, "signal": null}'
                          '\')\nsys.exit(4)'),
        "hook_removal": ("import sys, gc\nsys.modules['__main__']._block = lambda *a: None\n"
                         "for o in gc.get_objects():\n"
                         "    if isinstance(o, dict) and '_DENY' in o:\n"
                         "        o['_DENY'] = set()\n"
                         f"import os\nassert os.system('touch {v}/flag3') == 0\nprint('made')"),
        "setuid_root": "import os\nos.setuid(0)\nprint('made')",
        "mount_over": ("import ctypes\nlib = ctypes.CDLL(None, use_errno=True)\n"
                       "assert lib.mount(b'none', b'/usr', b'tmpfs', 0, None) == 0\n"
                       "print('made')"),
        "nested_userns_remount": (
            "import ctypes, os\nlib = ctypes.CDLL(None, use_errno=True)\n"
            "u = os.getuid()\nlib.prctl(4, 1, 0, 0, 0)  # dumpable again: own uid_map\n"
            "assert lib.unshare(0x10000000 | 0x00020000) == 0\n"
            "open('/proc/self/uid_map', 'w').write(f'0 {u} 1')\n"
            "assert lib.mount(None, b'/usr', None, 32 | 4096, None) == 0, ctypes.get_errno()\n"
            "open('/usr/evil', 'w').write('x')\nprint('made')"),
    }


def run_batch(victim: str, port: int, tag: str) -> Dict[str, dict]:
    from dataclasses import asdict, replace

    from jz3.config.eval import SandboxConfig
    from jz3.eval.sandbox import SandboxPool

    limits = SandboxConfig(wall_time_s=6.0, cpu_time_s=3, max_procs=16, audit_hook=False,
                           workers=2)
    progs = attacks(victim, port, tag)
    with SandboxPool(limits) as pool:
        res = pool.run_many(list(progs.values()))
        # the per-exec mode (one jailed interpreter per program) on a few
        few = ["write_tmp", "shm_open", "write_victim", "network"]
        res_pe = SandboxPool(replace(limits, fork_server=False)).run_many([progs[k] for k in few])
    out = {k: asdict(r) for k, r in zip(progs, res, strict=True)}
    out.update({f"per_exec_{k}": asdict(r) for k, r in zip(few, res_pe, strict=True)})
    return out


@pytest.fixture()
def listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.setblocking(False)
    yield srv
    srv.close()


def _victim(owner: int) -> Path:
    """A project-like folder (0755, owned by `owner`) with a file and a journal in it."""
    base = Path(tempfile.mkdtemp(prefix="jz3-victim-"))
    victim = base / "project"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    with sqlite3.connect(victim / "journal.sqlite") as db:
        db.execute("create table calls(completion)")
        db.execute("insert into calls values ('honest')")
    for p in (base, victim, *victim.iterdir()):
        os.chown(p, owner, owner) if os.geteuid() == 0 else None
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return victim


def _check(results: Dict[str, dict], victim: Path, tag: str, listener: socket.socket) -> None:
    made = {k for k, r in results.items() if r["stdout"].startswith("made") and r["error"] is None}
    # attacks whose *effect inside the jail* is harmless may succeed there; the host must not
    # see it. These must fail outright:
    must_fail = {"write_victim", "delete_victim", "rmtree_victim_parent", "rewrite_journal",
                 "write_project", "read_project", "subprocess_touch", "os_system",
                 "hook_removal", "network", "setuid_root", "write_jail_root", "mount_over", "nested_userns_remount",
                 "per_exec_write_victim", "per_exec_network"}
    assert not (made & must_fail), {k: results[k]["stdout"] for k in made & must_fail}
    for k in ("shm_open", "mkfifo_tmp", "sqlite_tmp", "write_tmp", "write_dev_shm",
              "per_exec_write_tmp", "per_exec_shm_open"):
        assert results[k]["error"] is None and results[k]["stdout"].startswith("made"), results[k]
    left = [p for d in ("/tmp", "/dev/shm") for p in Path(d).glob(f"{tag}*")]
    assert left == [], left  # each program's /tmp and /dev/shm were its own, and are gone
    assert not list(ROOT.glob(f"{tag}*"))
    assert sorted(p.name for p in victim.iterdir()) == ["journal.sqlite", "keep.txt"]
    assert (victim / "keep.txt").read_text() == "keep"
    with sqlite3.connect(victim / "journal.sqlite") as db:
        assert db.execute("select completion from calls").fetchall() == [("honest",)]
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody ever connected
    # the program sees only itself: no other process to kill or read
    assert results["kill_everything"]["stdout"].split()[-1] in ("0", "1")
    assert results["see_processes"]["stdout"].strip() in ("[]", "['1', '2']", "['2']",
                                                          "['1']")
    # a fork bomb is held (RLIMIT_NPROC, own pid namespace) and killed at the wall time
    assert results["fork_bomb"]["error"].startswith(("timeout", "cpu_limit"))
    # verdicts come from the parent, not from the program's text
    assert results["forged_block_verdict"]["error"] is None
    assert results["forged_block_verdict"]["stdout"] == "42\n"
    assert results["forged_cpu_verdict"]["error"] == "killed by signal SIGKILL"
    assert results["forged_report"]["returncode"] == 4
    assert results["forged_report"]["error"].startswith("exception")


def _no_process_with(marker: str) -> bool:
    out = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
    return marker not in out


def test_escapes_as_this_user(listener):
    tag = f"jz3evil{uuid.uuid4().hex[:8]}"
    victim = _victim(os.geteuid())
    try:
        results = run_batch(str(victim), listener.getsockname()[1], tag)
        _check(results, victim, tag, listener)
    finally:
        shutil.rmtree(victim.parent, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root to drop to an unprivileged user (else: the test above is "
                           "the unprivileged run)")
def test_escapes_as_an_unprivileged_user(listener):
    """The whole harness runs as nobody: bwrap with unprivileged user namespaces, cgroups
    delegated to it by root (the pool refuses without them)."""
    from tests.sandbox_delegation import delegated

    tag = f"jz3evil{uuid.uuid4().hex[:8]}"
    victim = _victim(NOBODY)
    try:
        cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
               sys.executable, "-m", "tests.test_sandbox_escapes", str(victim),
               str(listener.getsockname()[1]), tag]
        with delegated(NOBODY) as folders:
            assert folders, "no cgroup could be delegated to nobody"
            out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                                 env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                      "HOME": str(victim.parent)})
        assert out.returncode == 0, out.stderr[-3000:]
        results = json.loads(out.stdout.strip().splitlines()[-1])
        assert results["write_tmp"]["workdir"].startswith("/sbx/")
        _check(results, victim, tag, listener)
    finally:
        shutil.rmtree(victim.parent, ignore_errors=True)


_DAEMON_HARNESS = """
import sys, threading
from jz3.eval.forkserver import ForkServer
from jz3.eval.jail import jail_status
st = jail_status(None if len(sys.argv) < 3 else int(sys.argv[2]))
srv = ForkServer(("math",), uid=st.uid, python=st.python, sys_path=st.sys_path, tag=sys.argv[1])
code = '''
import os, signal, time
for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGALRM, signal.SIGINT):
    signal.signal(s, signal.SIG_IGN)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        while True:
            time.sleep(0.1)
    os._exit(0)
print("daemon started", flush=True)
time.sleep(1000)
'''
req = dict(code=code, cpu_time_s=100, wall_time_s=100.0, memory_mb=256, max_file_mb=1,
           max_procs=16, max_output_bytes=1000, audit_hook=False)
print("running", flush=True)
srv.run(req)
"""


@pytest.mark.parametrize("unprivileged", [False, True])
def test_no_process_survives_a_kill_9_of_the_harness(unprivileged):
    """A program that double-forks a daemon ignoring every catchable signal: after kill -9 of
    the harness, the jail (--die-with-parent) and its pid namespaces take everything along."""
    if unprivileged and os.geteuid() != 0:
        pytest.skip("needs root to drop to nobody")
    from jz3.eval.jail import jail_status

    marker = f"jz3daemon{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, "-c", _DAEMON_HARNESS, marker]
    if unprivileged:
        cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] + cmd
    elif os.geteuid() == 0 and jail_status(62000).uid is not None:
        cmd = cmd + ["62000"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "running"
        deadline = time.monotonic() + 60
        # the jailed processes carry the marker in their argv (the server's config)
        while time.monotonic() < deadline:
            out = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True,
                                 text=True).stdout
            if sum(marker in ln for ln in out.splitlines()) >= 5:  # bwrap x2, server, C, G..
                break
            time.sleep(0.1)
        time.sleep(1.0)  # the daemon is up
        assert not _no_process_with(marker)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while not _no_process_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _no_process_with(marker), "a sandboxed process outlived the harness"


if __name__ == "__main__":
    print(json.dumps(run_batch(sys.argv[1], int(sys.argv[2]), sys.argv[3])))
