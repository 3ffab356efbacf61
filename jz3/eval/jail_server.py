"""The fork server that runs inside the bubblewrap jail (standard library only).

Started as `python -I -B -c <this file's text> <json config>` by `jz3.eval.forkserver`; imports
the configured modules once (sympy, numpy, math), then serves requests: 4-byte big-endian length +
JSON, requests on fd 0, responses on fd 1.

Per request the server forks a *keeper* (C), C forks an *init* (G), G forks the *program* (P):
- C: new user, pid, ipc, net and uts namespaces, `oom_score_adj` 1000 (a cgroup OOM kill takes
  the program, not the server); pipes for stdout/stderr.
- G: pid 1 of the new pid namespace (when it exits the kernel kills every process left in it);
  ignores every signal; a mount namespace of its own, every mount private: fresh size-capped
  tmpfs on the working folder (/sbx), /tmp and /dev/shm, a private read-only /dev (null, zero,
  full, random, urandom, fd links; no pts), its own /proc (nothing a program writes is seen by
  any other program, and all of it is freed when G exits); closes every inherited fd, drops
  every capability (bounding set, ambient, no_new_privs), forks P, reaps, and hands P's wait
  status to C.
- P: pid 2; rlimits (CPU, file size, open files, processes, no core; address space on top of
  the preloaded server only where no memory cgroup counts the pages), a clean environment, the
  seccomp filter (built once by the server with libseccomp, see `_seccomp_filter`), then the
  program as `__main__` in /sbx/<id>.
- The server joins a fresh session keyring at start (the harness's keys are not reachable) and
  the filter denies keyctl/add_key/request_key besides.
- C enforces wall time and the output cap (SIGKILL to G = the whole namespace), reaps G with
  wait4 (its rusage includes P) and reports exit status, signal and rusage: the verdict is built
  from that, never from what P prints. C and the server are outside P's pid namespace and not
  dumpable, so P can neither signal nor ptrace them; G ignores signals from inside.
"""

import ctypes
import io
import json
import os
import resource
import select
import signal
import struct
import sys
import time
import types

CFG: dict = {}
NAMESPACES = True
IN = OUT = _NUL = -1
MB = 1 << 20
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
CLONE_NEWCGROUP, CLONE_NEWTIME = 0x02000000, 0x80
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 16384, 1 << 18
MS_REMOUNT, MS_BIND, MS_MOVE = 32, 4096, 8192
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
KEYCTL_JOIN_SESSION_KEYRING, SYS_KEYCTL = 1, 250  # x86_64
EPERM, ENOSYS = 1, 38
DEV_NODES = ("null", "zero", "full", "random", "urandom")
# denied with EPERM (the spirit of Docker's default profile): keys, io_uring, userfaultfd, perf,
# bpf, every mount/namespace call, modules, kexec, ptrace, clocks, swap, reboot, handles
DENY = ("keyctl", "add_key", "request_key", "io_uring_setup", "io_uring_enter",
        "io_uring_register", "userfaultfd", "perf_event_open", "bpf", "mount", "umount",
        "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig",
        "fsmount", "fspick", "mount_setattr", "unshare", "setns", "kexec_load",
        "kexec_file_load", "init_module", "finit_module", "delete_module", "create_module",
        "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "acct", "swapon", "swapoff",
        "reboot", "settimeofday", "stime", "clock_settime", "clock_adjtime", "adjtimex",
        "syslog", "quotactl", "quotactl_fd", "lookup_dcookie", "name_to_handle_at",
        "open_by_handle_at", "fanotify_init", "vhangup", "iopl", "ioperm", "uselib", "ustat",
        "sysfs", "_sysctl", "nfsservctl", "get_kernel_syms", "query_module", "vm86",
        "vm86old", "personality")
DENY_SOCKET_FAMILIES = (16, 17, 40)  # AF_NETLINK, AF_PACKET, AF_VSOCK
DENY_CLONE_FLAGS = (CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID,
                    CLONE_NEWNET, CLONE_NEWCGROUP, CLONE_NEWTIME)
SECCOMP_BPF = None  # the filter program (bytes), built once in the server
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]



def _check(rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src, target, fstype, flags, data=None):
    _check(LIBC.mount(src and src.encode(), target.encode(), fstype and fstype.encode(), flags,
                      data and data.encode()), f"mount {target}")


def _send(obj):
    data = json.dumps(obj).encode()
    os.write(OUT, struct.pack(">I", len(data)))
    view = memoryview(data)
    while view:
        view = view[os.write(OUT, view):]


def _read_exact(fd, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf.extend(chunk)
    return bytes(buf)


def _recv():
    head = _read_exact(IN, 4)
    if head is None:
        return None
    body = _read_exact(IN, struct.unpack(">I", head)[0])
    return None if body is None else json.loads(body)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _drop_capabilities():
    for cap in range(64):
        LIBC.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL past the last cap: ignored
    LIBC.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    _check(LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(LIBC.capset(ctypes.byref(_CapHeader(0x20080522, 0)), (_CapData * 2)()), "capset")


def _limit(res, soft, hard=None):
    try:
        resource.setrlimit(res, (soft, soft if hard is None else hard))
    except (ValueError, OSError):
        pass


def _enter_namespaces(size_mb):
    """C: the program's user, pid, ipc, net and uts namespaces (G makes the mount namespace)."""
    del size_mb  # the tmpfs are G's (`_private_mounts`)
    uid, gid = os.getuid(), os.getgid()
    LIBC.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # /proc/self/* must be ours to write
    with open("/proc/self/oom_score_adj", "w") as f:  # the first to go in a cgroup OOM
        f.write("1000")
    _check(LIBC.unshare(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWNET
                        | CLONE_NEWUTS), "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                       ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def _tmpfs(target, size_mb, mode="0700", flags=MS_NOSUID | MS_NODEV):
    _mount("tmpfs", target, "tmpfs", flags, f"size={size_mb}m,nr_inodes=16384,mode={mode}")


def _python_dirs_under_tmp():
    """O_PATH fds of the import folders (sys.path) that live under /tmp, outermost only: a venv
    under /tmp (a clone there) would vanish under the program's fresh /tmp, and with it every
    module imported lazily (sympy's set handlers, say)."""
    dirs = sorted({os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)})
    outer = []
    for d in dirs:  # interpreter folders only (lib/pythonX.Y, site-packages), never a project
        if (d.startswith("/tmp/") and ("/site-packages" in d or "/lib/python" in d)
                and not any(d.startswith(o + "/") for o in outer)):
            outer.append(d)
    return [(d, os.open(d, os.O_PATH | os.O_DIRECTORY)) for d in outer]


def _rebind(keep):
    """Bind the folders of `_python_dirs_under_tmp` back into the fresh /tmp, read-only."""
    tops = []
    for d, fd in keep:
        top = "/tmp/" + d[len("/tmp/"):].split("/", 1)[0]
        if top not in tops:  # the mount points' parents live on a tmpfs of their own, made
            os.mkdir(top, 0o755)  # read-only below: the program writes nothing in the path
            _mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,nr_inodes=256,mode=0755")
            tops.append(top)
        os.makedirs(d, 0o755, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", d, None, MS_BIND | MS_REC)
        os.close(fd)
        _mount(None, d, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    for top in tops:
        _mount(None, top, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=64k")


def _private_mounts(size_mb, work):
    """G: its own mount namespace; fresh capped tmpfs on /sbx, /tmp; a private read-only /dev
    (built on a staging tmpfs, then moved over bwrap's) with its own capped /dev/shm; /proc."""
    _check(LIBC.unshare(CLONE_NEWNS), "unshare mount namespace")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _tmpfs("/sbx", size_mb)
    keep = _python_dirs_under_tmp()
    _tmpfs("/tmp", size_mb, "1777")
    _rebind(keep)
    stage = "/tmp/.dev"
    os.mkdir(stage, 0o755)
    _mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755")
    for name in DEV_NODES:
        os.close(os.open(f"{stage}/{name}", os.O_CREAT | os.O_WRONLY, 0o666))
        _mount(f"/dev/{name}", f"{stage}/{name}", None, MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{stage}/{name}")
    os.mkdir(f"{stage}/shm", 0o1777)
    _mount(None, stage, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, "size=64k")
    _tmpfs(f"{stage}/shm", size_mb, "1777")
    _mount(stage, "/dev", None, MS_MOVE)
    os.rmdir(stage)
    os.mkdir(work, 0o700)
    try:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:  # proc cannot be mounted over bwrap's: hide it instead
        _mount("tmpfs", "/proc", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=1k")


class _SockFilter(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class _ArgCmp(ctypes.Structure):  # struct scmp_arg_cmp
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def _seccomp_filter():
    """The program's seccomp filter as a BPF program, built with libseccomp (through ctypes:
    the server runs on the standard library only). Default allow; `DENY` and `socket` of the
    `DENY_SOCKET_FAMILIES` and `clone` with any namespace flag fail with EPERM; `clone3`, whose
    flags a filter cannot see, fails with ENOSYS so that libc falls back to `clone`. Another
    architecture's syscalls (i386, x32) kill the process (libseccomp's default)."""
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    allow, errno = 0x7FFF0000, 0x00050000  # SCMP_ACT_ALLOW, SCMP_ACT_ERRNO(0)
    cmp_eq, cmp_masked_eq = 4, 7
    ctx = lib.seccomp_init(allow)
    if not ctx:
        raise OSError("seccomp_init failed")
    try:
        def rule(name, err, *cmps):
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr == -1:  # not a syscall on this architecture
                return
            arr = (_ArgCmp * max(1, len(cmps)))(*cmps)
            rc = lib.seccomp_rule_add_array(ctx, errno | err, nr, len(cmps), arr)
            if rc < 0:
                raise OSError(-rc, f"seccomp rule {name}: {os.strerror(-rc)}")

        for name in DENY:
            rule(name, EPERM)
        for fam in DENY_SOCKET_FAMILIES:
            rule("socket", EPERM, _ArgCmp(0, cmp_eq, fam, 0))
        for flag in DENY_CLONE_FLAGS:
            rule("clone", EPERM, _ArgCmp(0, cmp_masked_eq, flag, flag))
        rule("clone3", ENOSYS)
        fd = os.memfd_create("jz3-seccomp")
        try:
            rc = lib.seccomp_export_bpf(ctx, fd)
            if rc < 0:
                raise OSError(-rc, f"seccomp_export_bpf: {os.strerror(-rc)}")
            os.lseek(fd, 0, 0)
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)


def _load_seccomp(bpf):
    """Install `bpf` (needs no_new_privs, set by G) on this process and its future children."""
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFilter(len(bpf) // 8, ctypes.cast(buf, ctypes.c_void_p))
    _check(LIBC.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "seccomp")


def _fresh_keyring():
    """The server's own new (anonymous) session keyring: keys of the harness's session are no
    longer reachable from here on (errors ignored: keys may be off in this kernel)."""
    LIBC.syscall(SYS_KEYCTL, KEYCTL_JOIN_SESSION_KEYRING, None)


# --------------------------------------------------------------------------- the program (G)
_HOOK_DENY = {"os.system", "os.posix_spawn", "os.fork", "os.forkpty", "subprocess.Popen",
              "pty.spawn", "socket.__new__", "os.kill", "os.killpg"}


def _audit_hook(event, args):
    """Convenience only (a readable error for the common mistakes); not a security layer."""
    if event in _HOOK_DENY or event.startswith(("os.exec", "os.spawn")):
        raise PermissionError("sandbox: blocked " + event)


def _init(req, work, out_w, err_w, status_w):
    """G: pid 1 of the program's pid namespace. Mounts its /proc, starts the program (P, pid 2:
    so the kernel's SIGXCPU/SIGXFSZ and the program's own signals act on it normally, which
    they do not on a namespace's init), reaps, and reports P's wait status to the keeper on
    `status_w` (P has that pipe only until its setup ends). P cannot signal, ptrace or outlive
    G: G ignores every signal (so the kernel drops those from its namespace), is not dumpable,
    and its exit ends the namespace."""
    try:
        for s in signal.valid_signals():
            if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
                try:
                    signal.signal(s, signal.SIG_IGN)
                except (OSError, ValueError):
                    pass
        os.setsid()
        os.dup2(_NUL, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.closerange(3, status_w)
        os.closerange(status_w + 1, 65536)
        if NAMESPACES:
            LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            _private_mounts(int(req.get("tmpfs_mb", 64)), work)
            _drop_capabilities()
            LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        prog = os.fork()
    except BaseException as e:  # noqa: BLE001
        os.write(status_w, b"F")
        os.write(2, f"sandbox setup failed: {e!r}\n".encode())
        os._exit(125)
    if prog == 0:
        _program(req, work, status_w)
    os.close(0)
    os.close(1)
    os.close(2)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        except InterruptedError:
            continue
        if pid == prog:
            try:
                os.write(status_w, b"S" + struct.pack(">i", status))
            finally:
                os._exit(0)  # the namespace (every process P left) goes with it


def _program(req, work, status_w):
    try:
        for s in signal.valid_signals():  # G ignores them all; the program starts as usual
            if s not in (signal.SIGKILL, signal.SIGSTOP):
                try:
                    signal.signal(s, signal.SIG_DFL)
                except (OSError, ValueError):
                    pass
        _limit(resource.RLIMIT_CORE, 0)
        _limit(resource.RLIMIT_CPU, req["cpu_time_s"], req["cpu_time_s"] + 1)
        if not req.get("memory_cgroup"):  # else the cgroup counts the pages (tmpfs, memfd too)
            _limit(resource.RLIMIT_AS, BASE_VM + req["memory_mb"] * MB)  # on top of the server's
        _limit(resource.RLIMIT_FSIZE, req["max_file_mb"] * MB)
        _limit(resource.RLIMIT_NOFILE, 256)
        _limit(resource.RLIMIT_NPROC, req["max_procs"])
        os.chdir(work)
        os.environ.clear()
        os.environ.update({"HOME": work, "TMPDIR": "/tmp", "PATH": "/usr/bin:/bin",
                           "LANG": "C.UTF-8", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
                           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace")
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True)
        sys.path.insert(0, work)
        main = types.ModuleType("__main__")
        main.__file__ = "main.py"
        sys.modules["__main__"] = main
        sys.argv = ["main.py"]
        if req.get("audit_hook"):
            sys.addaudithook(_audit_hook)
        if SECCOMP_BPF is not None:  # last: nothing after this needs a denied call
            _load_seccomp(SECCOMP_BPF)
        os.close(status_w)  # setup done: from here on only G can write to it
    except BaseException as e:  # noqa: BLE001 - setup failed: say so on the harness pipe
        try:
            os.write(status_w, b"F")  # the keeper reads this as "setup failed"
            os.write(2, f"sandbox setup failed: {e!r}\n".encode())
        finally:
            os._exit(125)
    rc = 0
    try:
        exec(compile(req["code"], "main.py", "exec"), main.__dict__)
    except SystemExit as e:
        if e.code is None:
            rc = 0
        elif isinstance(e.code, int):
            rc = e.code & 0xFF
        else:
            print(e.code, file=sys.stderr)
            rc = 1
    except BaseException:  # noqa: BLE001
        import traceback

        etype, err, tb = sys.exc_info()
        traceback.print_exception(etype, err, tb.tb_next)  # from the program's own frame on
        rc = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - a closed/broken stdout must not change the exit path
        pass
    os._exit(rc)


# --------------------------------------------------------------------------- the keeper (C)
def _keeper(req, result_w):
    t0 = time.monotonic()
    res = {"id": req["id"]}
    try:
        size = int(req.get("tmpfs_mb", 64))
        if NAMESPACES:
            _enter_namespaces(size)
            work = f"/sbx/{req['id']}"  # made by G in its own mount namespace
        else:
            work = os.path.join(CFG["unsafe_root"], req["id"])
            os.mkdir(work, 0o700)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        status_r, status_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(out_r)
            os.close(err_r)
            os.close(status_r)
            _init(req, work, out_w, err_w, status_w)
        os.close(out_w)
        os.close(err_w)
        os.close(status_w)
        res.update(_watch(req, pid, out_r, err_r, t0))
        # b"F": setup failed; b"S" + wait status: how P ended, from G; nothing: G was killed
        os.set_blocking(status_r, False)
        try:
            msg = os.read(status_r, 16)
        except BlockingIOError:
            msg = b""
        os.close(status_r)
        res["setup_ok"] = not msg.startswith(b"F")
        if msg.startswith(b"S") and len(msg) >= 5:
            res.update(_status(struct.unpack(">i", msg[1:5])[0]))
        res["workdir"] = work
        if not NAMESPACES:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    except BaseException as e:  # noqa: BLE001 - report, never hang the server
        res["harness_error"] = f"{type(e).__name__}: {e}"
    data = json.dumps(res).encode()
    view = memoryview(data)
    while view:
        view = view[os.write(result_w, view):]
    os._exit(0)


def _status(status):
    return {"exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None}


def _watch(req, pid, out_r, err_r, t0):
    deadline = t0 + float(req["wall_time_s"])
    cap = int(req["max_output_bytes"])
    bufs = {out_r: bytearray(), err_r: bytearray()}
    pfd = os.pidfd_open(pid)
    open_fds = {out_r, err_r}
    total, timed_out, truncated, exited_at = 0, False, False, None
    while True:
        now = time.monotonic()
        if exited_at is None and now >= deadline:
            timed_out = True
            break
        if exited_at is not None and (not open_fds or now - exited_at > 1.0):
            break
        waits = list(open_fds) + ([pfd] if exited_at is None else [])
        limit = (deadline if exited_at is None else exited_at + 1.0) - now
        ready, _, _ = select.select(waits, [], [], max(0.0, limit))
        for fd in ready:
            if fd == pfd:
                exited_at = time.monotonic()
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                open_fds.discard(fd)
                continue
            total += len(chunk)
            room = cap - len(bufs[out_r]) - len(bufs[err_r])
            if room > 0:
                bufs[fd].extend(chunk[:room])
            if total > cap:
                truncated = True
        if truncated:
            break
    try:
        os.kill(pid, signal.SIGKILL)  # pid 1 of its namespace: every process in it goes too
    except ProcessLookupError:
        pass
    _, status, ru = os.wait4(pid, 0)
    os.close(pfd)
    return {**_status(status),
            "utime": ru.ru_utime, "stime": ru.ru_stime, "maxrss_kb": ru.ru_maxrss,
            "timed_out": timed_out, "truncated": truncated,
            "wall_s": time.monotonic() - t0,
            "stdout": bufs[out_r].decode("utf-8", "replace"),
            "stderr": bufs[err_r].decode("utf-8", "replace")}


# --------------------------------------------------------------------------- the server
def _serve_one(req):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.close(IN)
        os.close(OUT)
        _keeper(req, w)
    os.close(w)
    chunks, deadline = [], time.monotonic() + float(req["wall_time_s"]) + 10.0
    while True:
        ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            os.kill(pid, signal.SIGKILL)
            break
        chunk = os.read(r, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        return {"id": req["id"], "harness_error": f"keeper ended without a report ({status})"}


def _vm_size():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


BASE_VM = 0


def main():
    global BASE_VM, CFG, NAMESPACES, IN, OUT, _NUL, SECCOMP_BPF
    CFG = json.loads(sys.argv[1])
    NAMESPACES = bool(CFG.get("namespaces", True))
    # the protocol moves off fds 0/1 (no program ever inherits it: G closes every fd above 2)
    IN, OUT = os.dup(0), os.dup(1)
    _NUL = os.open("/dev/null", os.O_RDWR)
    os.dup2(_NUL, 0)
    os.dup2(_NUL, 1)
    preloaded = []
    sys.path.extend(CFG.get("sys_path") or [])
    for name in CFG.get("preload", ()):
        try:
            __import__(name)
            preloaded.append(name)
        except Exception:  # noqa: BLE001 - a missing optional module is the program's problem
            pass
    if CFG.get("warmup"):
        try:  # lazy imports and first-call setup happen once here, not in every program
            exec(CFG["warmup"], {"__name__": "__warmup__"})
        except Exception:  # noqa: BLE001 - a warm-up failure only costs speed
            pass
    BASE_VM = _vm_size()
    if NAMESPACES:
        LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        _fresh_keyring()
    if CFG.get("seccomp", NAMESPACES):
        SECCOMP_BPF = _seccomp_filter()  # no libseccomp: the server does not start
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    _send({"ready": True, "pid": os.getpid(), "preloaded": preloaded, "base_vm": BASE_VM})
    while True:
        req = _recv()
        if req is None:
            return
        _send(_serve_one(req))


if __name__ == "__main__":
    main()
