"""The forwarders benchmarks/compare.py compares, each started fresh per run.

Each one carries the same forwards over one SSH connection to the rig's
sshd: -L to the echo, sink and source targets (which only the server
reaches), and -R from two server ports to a sink and a source on this
machine.  ``pid`` is the process that does the forwarding, whose CPU time
is read from /proc; ``busy(client)`` keeps the process that *opened* the
tunnel busy in pure Python until the client process ends.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nbtunnel
from tests.rig.launcher import Targets
from tests.rig.rig import Rig
from tests.rig.sshd import free_port

from .pyforward import first_echo

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ("echo", "sink", "source")
REMOTE = ("rsink", "rsource")
GCM = "aes128-gcm@openssh.com"


def spin_while(running: Callable[[], bool]) -> None:
    """A pure-Python loop on the calling (main) thread, like a computing cell."""
    total = 0
    while running():
        for i in range(20_000):
            total += i * i % 7


@dataclass
class World:
    """The rig, the targets on this machine that -R forwards lead to, and a
    length-told sink (benchmarks/lsink.py) on each side."""

    rig: Rig
    here: Targets
    sink_there: int
    sink_here: int
    # Below the ephemeral range (32768-60999), where sshd's own connections
    # to the targets can hold a port the next forward asks for.
    _next: int = 20000

    def server_port(self) -> int:
        """A port on the server's side nobody listens on (never reused)."""
        if self.rig.netns is None:
            return free_port()
        self._next += 1
        return self._next

    def local_targets(self) -> list[tuple[str, str, int]]:
        t = self.rig.targets
        return [
            ("echo", t.host, t.echo),
            ("sink", t.host, self.sink_there),
            ("source", t.host, t.source),
        ]

    def remote_targets(self) -> list[tuple[str, int, str, int]]:
        h = self.here
        return [
            ("rsink", self.server_port(), h.host, self.sink_here),
            ("rsource", self.server_port(), h.host, h.source),
        ]

    def nbtunnel_tokens(self) -> tuple[list[str], list[tuple[str, int, str, int]]]:
        """nbtunnel's -L (ports of its choosing) and -R words for every
        target, and the -R targets (fresh server ports, so asked for once)."""
        tokens: list[str] = []
        for _, host, port in self.local_targets():
            tokens += ["-L", f"0:{host}:{port}"]
        remote = self.remote_targets()
        for _, sport, host, port in remote:
            tokens += ["-R", f"127.0.0.1:{sport}:{host}:{port}"]
        return tokens, remote


@contextlib.contextmanager
def lsink(argv_wrap: Callable[[list[str]], list[str]]) -> Iterator[int]:
    """benchmarks/lsink.py running (where argv_wrap says); yields its port."""
    proc = subprocess.Popen(
        argv_wrap(
            ["env", f"PYTHONPATH={ROOT}", sys.executable, "-m", "benchmarks.lsink"]
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        yield int(json.loads(proc.stdout.readline())["port"])
    finally:
        proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


@dataclass
class Running:
    """A started forwarder."""

    pid: int
    ports: dict[str, int]
    first_byte_ms: float
    close: Callable[[], None]
    busy: Callable[[subprocess.Popen[str]], None]
    extra: dict[str, float] = field(default_factory=dict)


def _wait_spinning(client: subprocess.Popen[str]) -> None:
    spin_while(lambda: client.poll() is None)


def start_openssh(world: World, *, cipher: str | None = None) -> Running:
    sshd = world.rig.sshd
    ports = {n: free_port() for n in LOCAL}
    argv = ["ssh", "-N", "-F", "/dev/null", "-o", "BatchMode=yes"]
    argv += ["-o", "ExitOnForwardFailure=yes", *sshd.args()]
    if cipher:
        argv += ["-c", cipher]
    for name, host, port in world.local_targets():
        argv += ["-L", f"127.0.0.1:{ports[name]}:{host}:{port}"]
    for name, sport, host, port in world.remote_targets():
        argv += ["-R", f"127.0.0.1:{sport}:{host}:{port}"]
        ports[name] = sport
    argv.append(sshd.destination)
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        first_echo(ports["echo"])
        first_ms = (time.perf_counter() - t0) * 1000
        # ssh sets up -R after -L: wait until the server listens there too.
        _wait_remote(world, [ports[n] for n in REMOTE], proc)
    except BaseException:
        _stop(proc)
        raise

    def close() -> None:
        _stop(proc)

    return Running(proc.pid, ports, first_ms, close, _wait_spinning)


def _wait_remote(world: World, ports: list[int], proc: subprocess.Popen[bytes]) -> None:
    from tests.rig import procs

    deadline = time.monotonic() + 30
    wanted = {("127.0.0.1", p) for p in ports}
    while True:
        listening: set[tuple[str, int]] = set()
        for pid in [world.rig.sshd.pid, *procs.descendants(world.rig.sshd.pid)]:
            listening |= procs.listening_tcp(pid)
        if wanted <= listening:
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"ssh did not set up its -R forwards: {err}")
        time.sleep(0.01)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()


# nbtunnel's switch for its speed-ups (the fast path and splice), read by the
# engine process when it starts ("0" turns them off, so "nbtunnel-plain").
SWITCH = "NBTUNNEL_FASTPATH"


@contextlib.contextmanager
def _environ(extra: dict[str, str]) -> Iterator[None]:
    """``extra`` in os.environ meanwhile: the engine process is started with
    a copy of it.  Only the (single-threaded) benchmark's own process."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _check_engine_env(pid: int, extra: dict[str, str]) -> None:
    """The engine really runs with ``extra``: a row labelled "fast path off"
    must not quietly measure the fast path."""
    env: dict[str, str] = {}
    for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        name, _, value = item.decode(errors="replace").partition("=")
        env[name] = value
    wrong = {k: env.get(k) for k, v in extra.items() if env.get(k) != v}
    if wrong:
        raise RuntimeError(f"the engine (pid {pid}) runs with {wrong}, not {extra}")


def start_nbtunnel(
    world: World, *, fastpath: bool = True, owner_only: bool = True
) -> Running:
    sshd = world.rig.sshd
    tokens, remote = world.nbtunnel_tokens()
    if not owner_only:
        tokens = ["-o", "OwnerOnly=no", *tokens]
    # Set either way: a switch left in the caller's environment must not
    # turn the "nbtunnel" row into a second plain one.
    extra = {SWITCH: "1" if fastpath else "0"}
    # A fresh manager: the first open() of a kernel spawns the engine
    # process, and that is part of the time to the first byte.
    manager = nbtunnel.Manager(engine="process")
    try:
        t0 = time.perf_counter()
        with _environ(extra):  # the engine starts in here, with a copy of it
            tunnel = manager.open(sshd.line(*tokens))
        fwds = tunnel.forwards
        ports = {n: fwds[i].listen_port or 0 for i, n in enumerate(LOCAL)}
        first_echo(ports["echo"])
        first_ms = (time.perf_counter() - t0) * 1000
        for name, sport, _, _ in remote:
            ports[name] = sport
        # Once the engine runs (a later cell): a tunnel over a new SSH
        # connection, to another address of the server, which the engine
        # cannot share with the first.
        echo = world.rig.targets
        other = f"[{sshd.host6}]" if sshd.host6 else "localhost"
        line = shlex.join(
            [*sshd.args(), "-L", f"0:{echo.host}:{echo.echo}", f"{sshd.user}@{other}"]
        )
        t0 = time.perf_counter()
        warm = manager.open(line)
        first_echo(warm.forwards[0].listen_port or 0)
        warm_ms = (time.perf_counter() - t0) * 1000
        warm.stop()
        pid = manager.engine_pid
        assert pid is not None
        _check_engine_env(pid, extra)
    except BaseException:
        manager.close()
        raise
    return Running(
        pid,
        ports,
        first_ms,
        manager.close,
        _wait_spinning,
        extra={"first_byte_warm_ms": warm_ms},
    )


def start_python(world: World, system: str) -> Running:
    """sshtunnel or asyncssh in a process of their own (benchmarks/pyforward.py)."""
    sshd = world.rig.sshd
    cfg = {
        "system": system,
        "host": sshd.host,
        "port": sshd.port,
        "user": sshd.user,
        "key": str(sshd.client_key),
        "known_hosts": str(sshd.known_hosts),
        "local": world.local_targets(),
        "remote": world.remote_targets() if system != "sshtunnel" else [],
        "echo": "echo",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.pyforward", json.dumps(cfg)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout
    line = stdout.readline()
    if not line:
        proc.wait()
        raise RuntimeError(f"{system} forwarder exited with {proc.returncode}")
    hello = json.loads(line)

    def busy(client: subprocess.Popen[str]) -> None:
        stdin.write("busy\n")
        stdin.flush()
        stdout.readline()  # "busy": its main thread spins from now on
        try:
            client.wait()
        finally:
            stdin.write("idle\n")
            stdin.flush()

    def close() -> None:
        with contextlib.suppress(OSError):
            stdin.close()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stdout.close()

    return Running(proc.pid, hello["ports"], hello["first_byte_ms"], close, busy)


SYSTEMS: dict[str, Callable[[World], Running]] = {
    "openssh": start_openssh,
    "openssh-gcm": lambda w: start_openssh(w, cipher=GCM),
    "nbtunnel": start_nbtunnel,
    # The fast path off (as NBTUNNEL_FASTPATH=0 or a cryptography before 47
    # leaves it): paramiko's own packets, nbtunnel's relay.
    "nbtunnel-plain": lambda w: start_nbtunnel(w, fastpath=False),
    # OwnerOnly off: every local user may connect, no owner lookup per
    # connection (what the check costs is nbtunnel's churn row against it).
    "nbtunnel-anyuser": lambda w: start_nbtunnel(w, owner_only=False),
    "sshtunnel": lambda w: start_python(w, "sshtunnel"),
    "asyncssh": lambda w: start_python(w, "asyncssh"),
}
OPTIONAL = {"sshtunnel": "sshtunnel", "asyncssh": "asyncssh"}
# What each negotiates with this sshd (docs/performance-notes.md, "Ciphers negotiated").
CIPHERS = {
    "openssh": "chacha20-poly1305@openssh.com (ssh's default)",
    "openssh-gcm": GCM,
    "nbtunnel": "aes128-gcm@openssh.com (nbtunnel prefers GCM)",
    "nbtunnel-plain": "aes128-gcm@openssh.com in paramiko's own packets "
    f"({SWITCH}=0: no fast path, no splice)",
    "nbtunnel-anyuser": "as nbtunnel, with -o OwnerOnly=no",
    "sshtunnel": "aes128-ctr + hmac-sha2-256 (paramiko's default)",
    "asyncssh": "chacha20-poly1305@openssh.com (asyncssh's default)",
}


def missing(system: str) -> str | None:
    """Why an optional system cannot run here (None if it can)."""
    module = OPTIONAL.get(system)
    if module and importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install -e '.[bench]')"
    return None
