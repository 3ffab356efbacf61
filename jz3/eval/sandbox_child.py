"""The bootstrap that runs inside the sandbox process, before the model's code.

Passed to `python -I -c` as source text (`BOOTSTRAP`), so the child imports nothing from jz3. It
applies rlimits, drops to the sandbox uid (when started as root), moves into its private working
folder, installs an audit hook that refuses process creation, network, ctypes symbol lookup and
file changes outside that folder, and then runs `main.py` (a trailing bare expression is printed,
as in a notebook cell). Blocked events are also reported on fd 2 as `JZ3_SANDBOX_BLOCKED <event>`.
"""

BOOTSTRAP = r'''
import json, os, resource, sys
cfg = json.loads(sys.argv[1])
if cfg.get("cgroup_procs"):
    with open(cfg["cgroup_procs"], "w") as _cg:
        _cg.write(str(os.getpid()))
MB = 1 << 20
def _lim(res, soft, hard=None):
    hard = soft if hard is None else hard
    try:
        resource.setrlimit(res, (soft, hard))
    except (ValueError, OSError):
        pass
_lim(resource.RLIMIT_CORE, 0)
_lim(resource.RLIMIT_CPU, cfg["cpu_time_s"], cfg["cpu_time_s"] + 1)
_lim(resource.RLIMIT_AS, cfg["memory_mb"] * MB)
_lim(resource.RLIMIT_FSIZE, cfg["max_file_mb"] * MB)
_lim(resource.RLIMIT_NOFILE, 256)
_lim(resource.RLIMIT_NPROC, cfg["max_procs"])
import signal
signal.alarm(int(cfg["wall_time_s"]) + 5)  # dies on its own if the harness is killed first
work = cfg["workdir"]
if cfg.get("uid") is not None:
    os.setgroups([])
    os.setgid(cfg["uid"])
    os.setuid(cfg["uid"])
os.chdir(work)
sys.path.extend(cfg.get("sys_path") or [])
sys.path.insert(0, work)
import _posixsubprocess
def _no_fork_exec(*a, **k):
    _block("_posixsubprocess.fork_exec")
_posixsubprocess.fork_exec = _no_fork_exec
_PATCHED = _posixsubprocess
_ROOT = os.path.realpath(work) + os.sep
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_DENY = {"os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
         "os.kill", "os.killpg", "pty.spawn", "subprocess.Popen", "ctypes.dlsym",
         "ctypes.dlsym/handle", "sys.addaudithook", "os.setuid", "socket.__new__",
         "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.gethostbyname",
         "socket.sendto", "os.chroot", "resource.setrlimit", "resource.prlimit"}
_PATH_ARGS = {"os.remove": (0,), "os.rename": (0, 1), "os.rmdir": (0,), "shutil.rmtree": (0,),
              "os.mkdir": (0,), "os.chmod": (0,), "os.chown": (0,), "os.symlink": (0, 1),
              "os.link": (0, 1), "os.truncate": (0,), "os.utime": (0,), "shutil.move": (0, 1),
              "os.setxattr": (0,), "os.removexattr": (0,)}
_write = os.write
def _inside(path):
    try:
        if isinstance(path, int):
            return True
        p = os.path.realpath(os.fsdecode(path))
    except Exception:
        return False
    return (p + os.sep).startswith(_ROOT)
def _block(event):
    try:
        _write(2, ("\nJZ3_SANDBOX_BLOCKED " + event + "\n").encode())
    except OSError:
        pass
    raise PermissionError("sandbox: blocked " + event)
def _hook(event, args):
    if event in _DENY or event.startswith("os.exec") or event.startswith("os.spawn"):
        _block(event)
    if event == "import" and args and args[0] == "_posixsubprocess" \
            and sys.modules.get("_posixsubprocess") is not _PATCHED:
        _block("re-import of _posixsubprocess")
    if event == "ctypes.dlopen" and args and args[0] is not None:
        _block(event)
    if event == "open" and len(args) >= 3:
        path, mode, flags = args[0], args[1], args[2]
        writing = (mode is not None and any(c in str(mode) for c in "wax+")) or (
            mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS)
        if writing and not _inside(path):
            _block("open-for-write outside the working folder: " + str(path))
    elif event in _PATH_ARGS:
        for i in _PATH_ARGS[event]:
            if i < len(args) and not _inside(args[i]):
                _block(event + " outside the working folder: " + str(args[i]))
if cfg.get("audit", True):
    sys.addaudithook(_hook)
del cfg
import ast
with open("main.py") as _f:
    _src = _f.read()
_tree = ast.parse(_src, "main.py")
if _tree.body and isinstance(_tree.body[-1], ast.Expr):
    _last = _tree.body[-1].value
    if not (isinstance(_last, ast.Call) and getattr(_last.func, "id", "") == "print"):
        _tree.body[-1] = ast.Expr(ast.Call(ast.Name("print", ast.Load()), [_last], []))
        ast.fix_missing_locations(_tree)
_code = compile(_tree, "main.py", "exec")
_g = {"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__}
del _tree, _src, _f
exec(_code, _g)
'''
