"""The code sandbox: escapes are contained and reported, and the harness goes on."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from jz3.config.eval import SandboxConfig
from jz3.eval.sandbox import (
    SandboxPool,
    network_unshare_works,
    pids_cgroup_root,
    run_python,
    uid_drop_possible,
)

LIMITS = SandboxConfig(wall_time_s=6.0, cpu_time_s=2, memory_mb=1024, max_procs=16, workers=2)


def _no_processes_left(marker: str) -> bool:
    out = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
    return marker not in out


def test_normal_code_runs_with_sympy_and_prints_last_expression():
    r = run_python("import sympy\nx = sympy.Symbol('x')\nprint(sympy.solve(x**2 - 4, x))\n6 * 7",
                   LIMITS)
    assert r.ok, r.stderr
    assert r.stdout.split() == ["[-2,", "2]", "42"]
    assert r.returncode == 0 and not r.timed_out


def test_local_files_allowed_and_folder_removed():
    r = run_python("import os\nopen('a.txt', 'w').write('hi')\nprint(os.getcwd())\n"
                   "print(open('a.txt').read())", LIMITS)
    assert r.ok, r.stderr
    cwd, text = r.stdout.split()
    assert text == "hi" and not Path(cwd).exists()


def test_exception_is_reported():
    r = run_python("1/0", LIMITS)
    assert r.error.startswith("exception: ZeroDivisionError")
    assert r.feedback().endswith("ZeroDivisionError: division by zero")


def test_infinite_loop_is_killed():
    limits = SandboxConfig(wall_time_s=4.0, cpu_time_s=1)
    r = run_python("while True:\n    pass", limits)
    assert r.error and (r.error.startswith("cpu_limit") or r.timed_out), r.error
    assert r.wall_s < limits.wall_time_s + 3


def test_sleeping_process_group_killed_on_timeout():
    marker = f"jz3sleep{uuid.uuid4().hex[:8]}"
    code = ("import time, signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            f"# {marker}\ntime.sleep(1000)")
    r = run_python(code, SandboxConfig(wall_time_s=2.0))
    assert r.timed_out and r.error.startswith("timeout")
    assert _no_processes_left(marker)


def test_fork_bomb_blocked():
    r = run_python("import os\nwhile True:\n    os.fork()", LIMITS)
    assert r.error == "blocked: os.fork"


@pytest.mark.skipif(pids_cgroup_root() is None and not uid_drop_possible(),
                    reason="no pids cgroup and no dedicated uid on this machine")
def test_fork_bomb_contained_without_audit_hook():
    """The OS layer alone (pids cgroup / RLIMIT_NPROC of the slot uid) holds a real fork bomb,
    and every forked process is killed afterwards."""
    code = ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")
    r = run_python(code, SandboxConfig(wall_time_s=3.0, cpu_time_s=2, max_procs=8,
                                       audit_hook=False))
    assert r.error is not None and r.timed_out
    assert r.workdir and _no_processes_left(r.workdir)  # the child's argv names its folder


def test_ten_gigabyte_allocation_fails_fast():
    r = run_python("x = bytearray(10 * 1024**3)\nprint('allocated')", LIMITS)
    assert r.error.startswith("memory_limit"), r.error
    assert "allocated" not in r.stdout
    assert r.wall_s < 5


def test_write_outside_working_folder_blocked(tmp_path):
    target = tmp_path / "evil.txt"
    r = run_python(f"open({str(target)!r}, 'w').write('x')", LIMITS)
    assert r.error.startswith("blocked: open-for-write outside the working folder")
    assert not target.exists()


def test_delete_outside_working_folder_blocked(tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("keep")
    for code in (f"import os\nos.remove({str(victim)!r})",
                 f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
                 f"import os\nos.rename({str(victim)!r}, 'stolen.txt')"):
        r = run_python(code, LIMITS)
        assert r.error and r.error.startswith("blocked"), (code, r.error)
    assert victim.read_text() == "keep"


def test_os_system_and_subprocess_blocked(tmp_path):
    flag = tmp_path / "ran"
    for code in (f"import os\nos.system('touch {flag}')",
                 f"import subprocess\nsubprocess.run(['touch', '{flag}'])",
                 f"import os\nos.execv('/usr/bin/touch', ['touch', '{flag}'])"):
        r = run_python(code, LIMITS)
        assert r.error and r.error.startswith("blocked"), (code, r.error)
    assert not flag.exists()


@pytest.fixture()
def listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    yield srv.getsockname()[1]
    srv.close()


def test_socket_blocked(listener):
    code = f"import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {listener}))\nprint('in')"
    r = run_python(code, LIMITS)
    assert r.error == "blocked: socket.__new__" and "in" not in r.stdout


@pytest.mark.skipif(not network_unshare_works(), reason="`unshare -n` is not permitted here")
def test_network_namespace_without_audit_hook(listener):
    code = f"import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {listener}))\nprint('in')"
    r = run_python(code, SandboxConfig(audit_hook=False))
    assert r.error and "in" not in r.stdout.split()


def test_printing_a_gigabyte_is_cut():
    r = run_python("import sys\nb = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(b)",
                   LIMITS)
    assert r.truncated and r.error.startswith("output_limit")
    assert len(r.stdout) <= LIMITS.max_output_bytes


def test_pool_finishes_remaining_items_after_escapes():
    codes = ["while True: pass", "import os\nos.fork()", "x = bytearray(10 * 1024**3)",
             "print(sum(range(101)))", "raise SystemExit(3)", "print('done')"]
    with SandboxPool(SandboxConfig(wall_time_s=4.0, cpu_time_s=2, workers=2)) as pool:
        res = pool.run_many(codes)
    assert [r.ok for r in res] == [False, False, False, True, False, True]
    assert res[3].stdout.strip() == "5050" and res[5].stdout.strip() == "done"
    assert res[4].error.startswith("exception") or res[4].returncode == 3


def test_unreachable_tmp_root_is_reported(tmp_path):
    r = run_python("print(1)", SandboxConfig(tmp_root=str(tmp_path)))
    if uid_drop_possible():  # pytest's tmp folders are 0700: the slot uid could not enter
        assert r.error.startswith("sandbox_error: tmp_root")
    else:
        assert r.ok and r.stdout.strip() == "1"


def test_parent_environment_not_leaked(monkeypatch):
    monkeypatch.setenv("JZ3_SECRET_TOKEN", "s3cret")
    r = run_python("import os\nprint(os.environ.get('JZ3_SECRET_TOKEN'))", LIMITS)
    assert r.stdout.strip() == "None"
    assert sys.executable and os.environ["JZ3_SECRET_TOKEN"] == "s3cret"


@pytest.mark.skipif(not uid_drop_possible(), reason="not root, or no interpreter a uid can read")
def test_dedicated_uid_denies_writes_even_without_audit_hook(tmp_path):
    """As root the child runs as its slot's uid: the OS itself refuses writes to the project."""
    target = Path(__file__).resolve().parent / f"evil-{uuid.uuid4().hex[:6]}.txt"
    r = run_python(f"import os\nprint(os.getuid())\nopen({str(target)!r}, 'w').write('x')",
                   SandboxConfig(audit_hook=False))
    assert int(r.stdout.split()[0]) >= SandboxConfig().uid_base
    assert r.error.startswith("exception: PermissionError") and not target.exists()


def test_child_dies_on_its_own_when_the_harness_is_killed():
    """kill -9 of the harness mid-run: the sandboxed process ends by its own alarm."""
    import shutil
    import tempfile
    import time

    tmp_path = Path(tempfile.mkdtemp(prefix="jz3-orphan-"))  # pytest's tmp is 0700: no uid entry
    os.chmod(tmp_path, 0o755)
    try:
        _orphan_dies(tmp_path, time)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _orphan_dies(tmp_path: Path, time) -> None:  # noqa: ANN001

    harness = ("import sys\nfrom jz3.config.eval import SandboxConfig\n"
               "from jz3.eval.sandbox import run_python\n"
               "run_python('import time\\ntime.sleep(100)', "
               "SandboxConfig(wall_time_s=1.0, tmp_root=sys.argv[1]))\n")
    proc = subprocess.Popen([sys.executable, "-c", harness, str(tmp_path)])
    deadline = time.monotonic() + 60
    while _no_processes_left(str(tmp_path) + "/jz3-sbx-") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _no_processes_left(str(tmp_path) + "/jz3-sbx-"), "the sandbox never started"
    proc.kill()
    proc.wait()
    time.sleep(0.5)
    assert not _no_processes_left(str(tmp_path)), "expected the orphan to outlive the harness"
    deadline = time.monotonic() + 15
    while not _no_processes_left(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _no_processes_left(str(tmp_path))
