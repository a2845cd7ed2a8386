"""A real Dask cluster on the rig's LAN (tests/rig/lan.py): a scheduler on
this machine, each worker a process in a machine (namespace) of its own.

Workers run as this user, from the repository (so tasks defined in tests
import), each with a home of its own that holds nothing: a key the kernel
finds in its own home is not on a worker, as on a real cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from . import procs
from .lan import Lan, Machine
from .netns import Netns, make_tempdir

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
WORKER_PORT = 9000  # each worker has its own namespace: one port for all


@dataclass
class Worker:
    name: str
    machine: Machine
    proc: subprocess.Popen[bytes]
    home: Path
    port: int = WORKER_PORT

    @property
    def address(self) -> str:
        return f"tcp://{self.machine.address}:{self.port}"


@dataclass
class DaskCluster:
    lan: Lan
    workdir: Path
    scheduler: subprocess.Popen[bytes] | None = None
    address: str = ""
    workers: dict[str, Worker] = field(default_factory=dict)

    def start(self) -> DaskCluster:
        info = self.workdir / "scheduler.json"
        argv = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
        argv += ["--host", self.lan.here, "--port", "0", "--no-dashboard"]
        argv += ["--scheduler-file", str(info)]
        self.scheduler = self._spawn(argv, "scheduler", os.environ.copy())
        deadline = time.monotonic() + START_TIMEOUT
        while not info.exists() or not info.read_text().strip():
            self._check(self.scheduler, "scheduler", deadline)
        self.address = json.loads(info.read_text())["address"]
        return self

    def add_worker(self, name: str, beside: Worker | None = None) -> Worker:
        """Start a worker on a new machine (or on ``beside``'s, as
        ``--nworkers 2`` would); returns once the process runs (the
        client's wait_for_workers says when the scheduler has it)."""
        machine = self.lan.machine() if beside is None else beside.machine
        port = WORKER_PORT + sum(w.machine is machine for w in self.workers.values())
        home = self.workdir / f"home-{name}"
        home.mkdir()
        env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(REPO_ROOT)}
        argv = [sys.executable, "-m", "distributed.cli.dask_worker", self.address]
        argv += ["--host", machine.address, "--worker-port", str(port)]
        argv += ["--name", name, "--nthreads", "2", "--no-nanny", "--no-dashboard"]
        argv += ["--local-directory", str(home / "dask")]
        proc = self._spawn(machine.exec_argv(argv), name, env)
        worker = self.workers[name] = Worker(name, machine, proc, home, port)
        return worker

    def stop_worker(self, name: str, grace: float = 20.0) -> Worker:
        """SIGTERM to the worker alone, as a batch system ends a job: it
        closes itself (its plugins' teardown runs); killed after ``grace``."""
        worker = self.workers.pop(name)
        worker.proc.terminate()
        try:
            worker.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            procs.stop_tree(worker.proc, hard=True)
        return worker

    def log(self, who: str) -> str:
        path = self.workdir / f"{who}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def _spawn(
        self, argv: list[str], who: str, env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        with open(self.workdir / f"{who}.log", "wb") as log:  # the child keeps its own
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=env,
                start_new_session=True,
            )

    def _check(self, proc: subprocess.Popen[bytes], who: str, deadline: float) -> None:
        if proc.poll() is not None:
            raise RuntimeError(
                f"the {who} exited ({proc.returncode}):\n{self.log(who)}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {who} did not start in time:\n{self.log(who)}")
        time.sleep(0.1)

    def close(self) -> None:
        for name in list(self.workers):
            self.stop_worker(name)
        if self.scheduler is not None:
            procs.stop_tree(self.scheduler)
            self.scheduler = None
        self.lan.destroy()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> DaskCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def start_cluster(server: Netns, server_host: str) -> DaskCluster:
    """The LAN and a scheduler on it, no worker yet (add_worker adds them)."""
    lan = Lan(server, server_host).create()
    cluster = DaskCluster(lan, make_tempdir("dask"))
    try:
        return cluster.start()
    except BaseException:
        cluster.close()
        raise
