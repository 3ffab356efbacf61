"""A real single-node SLURM cluster for tests (Debian packages slurmctld, slurmd, munge).

Usage in a test module::

    from tests.slurm_cluster import slurm_cluster  # noqa: F401

    def test_array(slurm_cluster, tmp_path):
        job = slurm_cluster.sbatch(["--array=0-3", "job.sbatch"], cwd=tmp_path)
        states = slurm_cluster.wait(job, timeout=120)   # {0: "COMPLETED", 1: ...}

The cluster writes its own slurm.conf in a temp dir, starts its own ``munged`` (own key and
socket), ``slurmctld`` and ``slurmd`` in the foreground as child processes on free ports, waits
for the node to be idle, and at teardown stops exactly the processes it started.
It uses proctrack/linuxproc + task/none so it runs in containers without systemd or cgroups.
Client commands see the cluster through ``SLURM_CONF`` (set in ``cluster.env``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")
TERMINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                   "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT"}


# Job credential lifetime (SLURM's default 120 s). It is also how long a requeued job waits before
# it may start again: slurmd refuses a relaunch while the first execution's revoked credential is
# remembered ("Killing non-startable batch job: Job credential revoked"), so tests must not force
# an earlier start (`scontrol update StartTime=now`); a short lifetime keeps them quick.
CRED_EXPIRE_S = 10


class SlurmClusterError(RuntimeError):
    """The local cluster could not start or a SLURM command failed (message has the log tail)."""


def missing_binaries() -> List[str]:
    """SLURM/munge programs not on PATH (also /usr/sbin, where Debian puts the daemons)."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [b for b in DAEMONS if shutil.which(b, path=path) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _expand_tasks(spec: str) -> List[int]:
    """'0-3,7%2' -> [0, 1, 2, 3, 7]."""
    spec = spec.split("%")[0]
    out: List[int] = []
    for part in spec.split(","):
        if "-" in part:
            lo, hi = part.split("-")[:2]
            step = 1
            if ":" in hi:
                hi, st = hi.split(":")
                step = int(st)
            out.extend(range(int(lo), int(hi) + 1, step))
        elif part:
            out.append(int(part))
    return out


class SlurmCluster:
    """One controller + one compute node on this host, in a private temp dir."""

    def __init__(self, root: Optional[Path] = None, cpus: int = 4, nodename: str = "jz3node",
                 partition: str = "debug") -> None:
        self.root = Path(root or tempfile.mkdtemp(prefix="jz3-slurm-"))
        self.cpus = cpus
        self.nodename = nodename
        self.partition = partition
        self.host = socket.gethostname().split(".")[0]
        self.procs: Dict[str, subprocess.Popen] = {}
        self.conf = self.root / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.env["PATH"] = self.env.get("PATH", "") + ":/usr/sbin:/sbin"
        self.env.pop("SLURM_JOB_ID", None)

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 60.0) -> SlurmCluster:
        missing = missing_binaries()
        if missing:
            raise SlurmClusterError(f"missing {missing}: run `make system-deps` (apt-get install "
                                    "slurmctld slurmd slurm-client munge) as root")
        for d in ("munge", "state", "spool", "log"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "spool" / self.nodename).mkdir(exist_ok=True)
        os.chmod(self.root, 0o700)
        os.chmod(self.root / "munge", 0o700)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(128))
        os.chmod(key, 0o600)
        self.munge_socket = self.root / "munge" / "munge.socket"
        self._spawn("munged", ["munged", "-F", "--force", f"--key-file={key}",
                               f"--socket={self.munge_socket}",
                               f"--pid-file={self.root / 'munge' / 'munged.pid'}",
                               f"--seed-file={self.root / 'munge' / 'munged.seed'}",
                               f"--log-file={self.root / 'log' / 'munged.log'}"])
        self._wait_for(lambda: self.munge_socket.exists(), 15, "munged socket")
        self._write_conf()
        self._spawn("slurmctld", ["slurmctld", "-D", "-c", "-f", str(self.conf)])
        self._wait_for(self._ctld_up, timeout, "slurmctld to answer")
        self._spawn("slurmd", ["slurmd", "-D", "-N", self.nodename, "-f", str(self.conf)])
        self._wait_for(self._node_idle, timeout, f"node {self.nodename} to be idle")
        return self

    def stop(self) -> None:
        """Cancel this cluster's jobs, then stop exactly the daemons this object started."""
        if self.procs.get("slurmctld") is not None and self.procs["slurmctld"].poll() is None:
            try:
                self.run(["scancel", f"--partition={self.partition}"], check=False)
            except (OSError, subprocess.SubprocessError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.pop(name, None)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ client API
    def run(self, args: List[str], cwd: Optional[Path] = None, check: bool = True,
            env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster."""
        cp = subprocess.run(args, cwd=cwd, env={**self.env, **(env or {})}, text=True,
                            capture_output=True, timeout=60)
        if check and cp.returncode != 0:
            raise SlurmClusterError(f"{' '.join(args)} failed ({cp.returncode}): "
                                    f"{cp.stderr.strip()}\n{self.log_tail()}")
        return cp

    def sbatch(self, args: List[str], cwd: Optional[Path] = None,
               env: Optional[Dict[str, str]] = None) -> str:
        """Submit; returns the job id (array master id for arrays)."""
        cp = self.run(["sbatch", "--parsable", f"--partition={self.partition}", *args],
                      cwd=cwd, env=env)
        return cp.stdout.strip().split(";")[0]

    def scancel(self, job_id: str, signal_name: Optional[str] = None) -> None:
        args = ["scancel"] + ([f"--signal={signal_name}"] if signal_name else []) + [str(job_id)]
        self.run(args)

    def show_job(self, job_id: str) -> List[Dict[str, str]]:
        """``scontrol -o show job``: one {field: value} per job record (array task)."""
        cp = self.run(["scontrol", "-o", "show", "job", str(job_id)], check=False)
        return [dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
                for line in cp.stdout.splitlines()]

    def restarts(self, job_id: str) -> int:
        """How many times a (plain) job has been requeued (`Restarts=`)."""
        return max((int(f.get("Restarts", 0)) for f in self.show_job(job_id)), default=0)

    def states(self, job_id: str) -> Dict[int, str]:
        """{array task id (0 for a plain job): state} from ``scontrol show job``."""
        out: Dict[int, str] = {}
        for fields in self.show_job(job_id):
            state = fields.get("JobState", "UNKNOWN")
            tasks = fields.get("ArrayTaskId")
            for t in (_expand_tasks(tasks) if tasks else [0]):
                out[t] = state
        return out

    def wait(self, job_id: str, timeout: float = 300.0, poll: float = 0.5) -> Dict[int, str]:
        """Block until every task of the job is in a terminal state; return {task: state}."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.states(job_id)
            if st and all(s in TERMINAL_STATES for s in st.values()):
                return st
            if time.monotonic() > deadline:
                raise SlurmClusterError(f"job {job_id} not done after {timeout}s: {st}\n"
                                        f"{self.log_tail()}")
            time.sleep(poll)

    def wait_state(self, job_id: str, task: int, wanted: str, timeout: float = 120.0) -> None:
        """Block until one array task reaches ``wanted`` (e.g. RUNNING)."""
        deadline = time.monotonic() + timeout
        while self.states(job_id).get(task) != wanted:
            if time.monotonic() > deadline:
                raise SlurmClusterError(f"job {job_id}_{task} never {wanted}: "
                                        f"{self.states(job_id)}")
            time.sleep(0.2)

    def log_tail(self, n: int = 20) -> str:
        parts = []
        for f in sorted((self.root / "log").glob("*.log")):
            lines = f.read_text(errors="replace").splitlines()[-n:]
            parts.append(f"--- {f.name}\n" + "\n".join(lines))
        return "\n".join(parts)

    # ------------------------------------------------------------------ internals
    def _spawn(self, name: str, args: List[str]) -> None:
        log = open(self.root / "log" / f"{name}.stdout", "w")
        self.procs[name] = subprocess.Popen(args, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def _wait_for(self, pred, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            for name, p in self.procs.items():
                if p.poll() is not None:
                    out = (self.root / "log" / f"{name}.stdout").read_text(errors="replace")
                    self.stop()
                    raise SlurmClusterError(f"{name} exited ({p.returncode}) while waiting for "
                                            f"{what}:\n{out[-2000:]}\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise SlurmClusterError(f"timed out waiting for {what}\n{self.log_tail()}")
            time.sleep(0.25)

    def _ctld_up(self) -> bool:
        return self.run(["scontrol", "ping"], check=False).returncode == 0

    def _node_idle(self) -> bool:
        cp = self.run(["sinfo", "-h", "-N", "-n", self.nodename, "-o", "%T"], check=False)
        return cp.returncode == 0 and cp.stdout.strip().rstrip("*") == "idle"

    def _write_conf(self) -> None:
        r = self.root
        self.conf.write_text(f"""\
ClusterName=jz3test
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket},cred_expire={CRED_EXPIRE_S}
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool' / '%n'}
SlurmctldPidFile={r / 'slurmctld.pid'}
SlurmdPidFile={r / 'slurmd-%n.pid'}
SlurmctldLogFile={r / 'log' / 'slurmctld.log'}
SlurmdLogFile={r / 'log' / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SwitchType=switch/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
MaxArraySize=100001
MinJobAge=3600
KillWait=2
InactiveLimit=0
SlurmdTimeout=60
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
NodeName={self.nodename} NodeHostname={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory=4096 State=UNKNOWN
PartitionName={self.partition} Nodes={self.nodename} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
""")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """Session-scoped running cluster; stopped at the end of the session."""
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except SlurmClusterError as e:
        pytest.fail(str(e))
    try:
        yield cluster
    finally:
        cluster.stop()
