"""A real single-node SLURM cluster for the tests (Debian's slurm-wlm and munge): munged, slurmctld
and slurmd started on free ports with a private config, state and socket under a temporary
directory, stopped again by `stop` (exactly the daemons it started)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available() -> str | None:
    """Why no cluster can start here (a missing program), or None."""
    for program in ("munged", "slurmctld", "slurmd", "sbatch"):
        if shutil.which(program) is None and not os.path.exists(f"/usr/sbin/{program}"):
            return f"{program} not installed (apt-get install slurm-wlm munge)"
    return None


def _program(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class SlurmCluster:
    """slurmctld + slurmd for this machine as one node; `env` is what every SLURM client needs."""

    def __init__(self, root: str):
        self.root = root
        self.procs: list[subprocess.Popen] = []
        for sub in ("etc", "state", "spool", "log", "munge", "run"):
            os.makedirs(os.path.join(root, sub), exist_ok=True)
        os.chmod(os.path.join(root, "munge"), 0o755)  # munged insists on a 755 socket directory
        self.conf = os.path.join(root, "etc", "slurm.conf")
        self.socket = os.path.join(root, "munge", "munge.socket")
        self.env = dict(os.environ, SLURM_CONF=self.conf)

    def start(self, timeout: float = 60.0) -> SlurmCluster:
        key = os.path.join(self.root, "etc", "munge.key")
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o400)
        self._spawn(
            [
                _program("munged"),
                "--foreground",
                "--force",
                f"--key-file={key}",
                f"--socket={self.socket}",
                f"--pid-file={self.root}/run/munged.pid",
                f"--log-file={self.root}/log/munged.log",
                f"--seed-file={self.root}/run/munged.seed",
            ]
        )
        self._wait(lambda: os.path.exists(self.socket), timeout, "munged's socket")
        node = subprocess.run([_program("slurmd"), "-C"], capture_output=True, text=True).stdout.splitlines()[0]
        self.node = node.split()[0].split("=", 1)[1]
        r = self.root
        with open(self.conf, "w") as f:
            f.write(
                f"""ClusterName=test
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.socket}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=30
MinJobAge=3600
SchedulerParameters=sched_interval=1
{node} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
""".replace(f"{node} NodeAddr", f"{' '.join(p for p in node.split() if not p.startswith('UpTime'))} NodeAddr")
            )
        self._spawn([_program("slurmctld"), "-D", "-i", "-f", self.conf])
        self._spawn([_program("slurmd"), "-D", "-f", self.conf, "-N", self.node])
        self._wait(self._node_idle, timeout, "the node to come up")
        return self

    def _spawn(self, argv: list[str]) -> None:
        log = open(os.path.join(self.root, "log", os.path.basename(argv[0]) + ".out"), "w")
        self.procs.append(
            subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        )

    def _node_idle(self) -> bool:
        out = self.run("sinfo", "-h", "-o", "%T", check=False).stdout.strip()
        return out.startswith("idle")

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if any(p.poll() is not None for p in self.procs):
                break
            time.sleep(0.3)
        logs = {
            name: open(os.path.join(self.root, "log", name)).read()[-1500:]
            for name in os.listdir(os.path.join(self.root, "log"))
        }
        self.stop()
        raise RuntimeError(f"SLURM test cluster: waited for {what} in vain; logs: {logs}")

    def run(self, *argv: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        """A SLURM client command (sbatch, squeue, scontrol, ...) against this cluster."""
        return subprocess.run(list(argv), capture_output=True, text=True, env=self.env, check=check, **kwargs)

    def job_field(self, job: str, field: str) -> str:
        """A field of `scontrol show job` (JobState, Restarts, ExitCode, ...)."""
        out = self.run("scontrol", "show", "job", job, check=False).stdout
        for token in out.split():
            if token.startswith(field + "="):
                return token.split("=", 1)[1]
        return ""

    def wait_state(self, job: str, states: tuple[str, ...], timeout: float = 240.0) -> str:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.job_field(job, "JobState")
            if state in states:
                return state
            time.sleep(0.5)
        raise TimeoutError(f"job {job} stayed {state!r}, not {states}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.procs = []
