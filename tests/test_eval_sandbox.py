"""The code sandbox's behaviour: output, limits, verdicts from the parent, the harness goes on.
(Escape attempts, as root and as an unprivileged user: tests/test_sandbox_escapes.py.)"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from jz3.config.eval import SandboxConfig
from jz3.eval import sandbox as sandbox_mod
from jz3.eval.sandbox import SandboxPool, SandboxUnavailable, run_python, sandbox_mode

LIMITS = SandboxConfig(wall_time_s=6.0, cpu_time_s=2, memory_mb=1024, max_procs=16, workers=2)


def test_a_jail_is_available_here():
    mode = sandbox_mode(LIMITS)
    assert mode.ok, mode.reason  # CI installs bubblewrap (`make system-deps`)


def test_sympy_program_output_without_echo():
    r = run_python("import sympy\nx = sympy.Symbol('x')\nprint(sympy.solve(x**2 - 4, x))\n6 * 7",
                   LIMITS)
    assert r.ok, r.stderr
    assert r.stdout == "[-2, 2]\n"  # a trailing bare expression is not echoed (release: stdout)
    assert r.returncode == 0 and not r.timed_out and r.signal is None


def test_correct_programs_print_only_what_they_print():
    """`sys.stdout.write` returns a count and `main()` returns None: neither is printed."""
    r = run_python("import sys\nsys.stdout.write('42\\n')", LIMITS)
    assert r.ok and r.stdout == "42\n"
    r = run_python("def main():\n    print(7)\n\nmain()", LIMITS)
    assert r.ok and r.stdout == "7\n"


def test_local_files_allowed_in_the_private_folder():
    r = run_python("import os\nopen('a.txt', 'w').write('hi')\nprint(os.getcwd())\n"
                   "print(open('a.txt').read())", LIMITS)
    assert r.ok, r.stderr
    cwd, text = r.stdout.split()
    assert text == "hi" and cwd == r.workdir and cwd.startswith("/sbx/")
    assert not os.path.exists(cwd)  # the folder exists only inside the program's namespace


def test_each_program_gets_a_fresh_folder_and_tmp():
    w = run_python("open('/tmp/left.txt', 'w').write('x')\nopen('left.txt', 'w').write('x')",
                   LIMITS)
    assert w.ok, w.stderr
    r = run_python("import os\nprint(os.path.exists('/tmp/left.txt'), os.listdir('.'), "
                   "os.listdir('/sbx'))", LIMITS)
    assert r.stdout.strip() == f"False [] ['{os.path.basename(r.workdir)}']"


def test_exception_is_reported():
    r = run_python("1/0", LIMITS)
    assert r.error.startswith("exception: ZeroDivisionError")
    assert r.feedback().endswith("ZeroDivisionError: division by zero")
    assert "jail_server" not in r.stderr and 'File "main.py", line 1' in r.stderr
    r = run_python("x = (", LIMITS)
    assert r.error.startswith("exception: SyntaxError")


def test_exit_codes():
    assert run_python("raise SystemExit(3)", LIMITS).returncode == 3
    assert run_python("import sys\nsys.exit()", LIMITS).ok
    r = run_python("import sys\nsys.exit('bad input')", LIMITS)
    assert r.returncode == 1 and r.stderr.strip() == "bad input"


def test_infinite_loop_is_a_cpu_limit_from_rusage():
    limits = SandboxConfig(wall_time_s=5.0, cpu_time_s=1)
    r = run_python("while True:\n    pass", limits)
    assert r.error.startswith("cpu_limit"), r.error
    # (on a loaded VM the kernel's SIGXCPU comes at 0.86-1.0 s of the CPU it reports)
    assert r.cpu_s >= 0.8 and r.wall_s < limits.wall_time_s + 3


def test_sleeping_program_killed_at_wall_time():
    r = run_python("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                   "time.sleep(1000)", SandboxConfig(wall_time_s=2.0))
    assert r.timed_out and r.error.startswith("timeout") and r.wall_s < 6


def test_ten_gigabyte_allocation_fails_fast():
    r = run_python("x = bytearray(10 * 1024**3)\nprint('allocated')", LIMITS)
    assert r.error.startswith("memory_limit"), r.error
    assert "allocated" not in r.stdout and r.wall_s < 5


def test_memory_limit_is_on_top_of_the_preloaded_modules():
    r = run_python("x = bytearray(600 * 1024**2)\nprint(len(x) >> 20)", LIMITS)
    assert r.ok and r.stdout.strip() == "600", r.error


def test_big_file_hits_the_file_size_limit():
    r = run_python("open('big', 'wb').write(b'x' * (40 << 20))", replace(LIMITS, max_file_mb=4))
    assert r.error and r.error.startswith(("file_size_limit", "exception: OSError")), r.error


def test_printing_a_gigabyte_is_cut():
    r = run_python("import sys\nb = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(b)",
                   LIMITS)
    assert r.truncated and r.error.startswith("output_limit")
    assert len(r.stdout) <= LIMITS.max_output_bytes


def test_parent_environment_not_leaked(monkeypatch):
    monkeypatch.setenv("JZ3_SECRET_TOKEN", "s3cret")
    r = run_python("import os\nprint(os.environ.get('JZ3_SECRET_TOKEN'), os.environ['HOME'])",
                   LIMITS)
    assert r.stdout.split() == ["None", r.workdir]


def test_audit_hook_is_a_convenience_message_only():
    r = run_python("import os\nos.fork()", LIMITS)
    assert r.error == "exception: PermissionError: sandbox: blocked os.fork"
    r = run_python("import os\npid = os.fork()\nprint('forked' if pid else '', end='')\n"
                   "os._exit(0) if pid == 0 else os.wait()", replace(LIMITS, audit_hook=False))
    assert r.ok and r.stdout == "forked"


def test_pool_finishes_remaining_items_after_escapes():
    codes = ["while True: pass", "import os\nos.fork()", "x = bytearray(10 * 1024**3)",
             "print(sum(range(101)))", "raise SystemExit(3)", "print('done')"]
    with SandboxPool(SandboxConfig(wall_time_s=4.0, cpu_time_s=2, workers=2)) as pool:
        res = pool.run_many(codes)
    assert [r.ok for r in res] == [False, False, False, True, False, True]
    assert res[3].stdout.strip() == "5050" and res[5].stdout.strip() == "done"
    assert res[4].returncode == 3


def test_per_exec_mode_gives_the_same_results():
    from jz3.eval.jail import python_paths

    # this Python's folders that each program's fresh /tmp hides
    hidden = tuple(p for p in python_paths() if p.startswith(("/tmp/", "/dev/shm/")))
    if hidden:
        pytest.skip("the environment lives under /tmp (e.g. a checkout there): per-program "
                    f"interpreters cannot import its site-packages {hidden}; "
                    "only the fork server's preloaded modules and the stdlib are importable")
    limits = replace(LIMITS, fork_server=False)
    r = run_python("import sympy\nprint(sympy.Rational(1, 3) + 1)", limits)
    assert r.ok and r.stdout == "4/3\n"
    assert run_python("1/0", limits).error.startswith("exception: ZeroDivisionError")


def test_run_python_never_raises(monkeypatch):
    def broken(limits):
        raise PermissionError(13, "Permission denied", "/tmp/slot-folder-of-someone-else")

    monkeypatch.setattr(sandbox_mod, "sandbox_mode", broken)
    r = run_python("print(1)", LIMITS)
    assert r.error.startswith("sandbox_error") and "Permission denied" in r.error


def test_no_jail_refuses_unless_unsafe(monkeypatch, capsys):
    from jz3.eval.jail import JailStatus

    monkeypatch.setattr(sandbox_mod, "sandbox_mode",
                        lambda limits: JailStatus(False, "bubblewrap is not installed"))
    with pytest.raises(SandboxUnavailable, match="eval.sandbox.unsafe"):
        SandboxPool(LIMITS)
    r = run_python("print(1)", LIMITS)
    assert r.error.startswith("sandbox_error: no jail") and "unsafe" in r.error
    monkeypatch.setattr(sandbox_mod, "_warned_unsafe", False)
    unsafe = replace(LIMITS, unsafe=True)
    with SandboxPool(unsafe) as pool:
        r = pool.run("import sympy\nprint(sympy.sqrt(4))")
    assert r.ok and r.stdout == "2\n"
    assert "SANDBOX UNSAFE" in capsys.readouterr().err
    # a working-folder root it cannot write (e.g. another user's): an error result, no raise
    r = run_python("print(1)", replace(unsafe, tmp_root="/proc/self"))
    assert r.error.startswith("sandbox_error")


def test_usable_from_a_forked_child():
    """A forked worker (e.g. a filter worker) gets its own servers and spawner thread instead
    of talking over its parent's pipes."""
    assert run_python("print(1)", LIMITS).ok  # the parent has a server now
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            # another pool key: a new server must be started from this process
            res = run_python("import sympy\nprint(sympy.sqrt(9))", replace(LIMITS, tmp_root="/"))
            os.write(w, (res.stdout if res.ok else f"ERR {res.error}").encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    assert os.read(r, 1000).decode() == "3\n"
    os.close(r)
    assert run_python("print(2)", LIMITS).stdout == "2\n"  # the parent's server still works
