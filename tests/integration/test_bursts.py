"""Bursts of short connections through one -L, against the rig's real sshd.

Issue 20's burst: four client processes open about 800 connections a
second between them for 10 s, each sending a little and going without
reading the reply (in turn: a reset, a half-close, a plain close).  The
forward leads to the rig's tally target, which counts every connection it
accepted and the sha256 of every one it read to the end.  Before, the
engine grew to thousands of threads, took a minute to drain, failed
thousands of connections, and an unrelated client waited 42 s.

Checked for nbtunnel, and measured for ``ssh -L`` under the same load
(printed, for the closing note):

- an unrelated client on the same forward (a new connection every 0.1 s)
  is never starved: every round trip of its succeeds, none waits 10 s
  (before: 42 s).  The issue's figure, under 2 s, is a speed and is
  measured in benchmarks/ (the "burst" row, against ssh): at 800
  connections a second the engine takes about one core, so on a 2-core
  machine shared with the clients, sshd and the target, anything else
  running holds the bystander up behind the queue (1-4 s seen, 0.01-0.1 s
  quiet), which says nothing about starvation;
- the engine is back to its idle thread count within 10 s of the end;
- every byte of every client that did not reset arrived (sha256);
- with the forwarder stopped (SIGSTOP) while clients come and go, so that
  each client surely gave up before its channel could open: no target
  connection for one that reset or closed without a byte, and every byte
  of one that sent and half-closed arrives.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nbtunnel import Manager

from tests.rig import clients, procs
from tests.rig.launcher import Targets
from tests.rig.openssh import openssh_forward
from tests.rig.sshd import SshServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 4
RATE = 800.0  # connections a second, all clients together
SECONDS = 10.0
# Clients that come and go while the forwarder is stopped: within the
# listen backlog of ssh (128), which then holds them all.
FROZEN = 100
LINGER_0 = struct.pack("ii", 1, 0)
# A bystander waiting this long for one round trip is starved (see above).
STARVED = 10.0
# How often the sampler looks: reading /proc costs the machine under test.
SAMPLE_EVERY = 0.2
# These clients send and close at once, most of them before the forward
# looks them up: OwnerOnly (on by default, issue 21) can no longer tell
# whose they were and refuses them (tests/integration/test_owner_only.py).
# What is measured here is the admission under a burst, so it is off.
ANY_USER = ("-o", "OwnerOnly=no")


def workload(*args: object) -> subprocess.Popen[str]:
    """benchmarks/workload.py in a process of its own (see its docstring)."""
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.workload", *map(str, args)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def result(proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    doc: dict[str, Any] = json.loads(out)
    assert "error" not in doc, doc
    return doc


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def frozen_clients(pid: int, port: int) -> list[str]:
    """With the forwarder stopped, FROZEN clients connect (the kernel
    completes them), and in turn: send and reset, reset at once, send and
    half-close, close without a byte.  Returns the half-closed ones' sha256."""
    digests = []
    os.kill(pid, signal.SIGSTOP)
    try:
        for i in range(FROZEN):
            sock = socket.create_connection(("127.0.0.1", port), 5)
            payload = b"frozen %d " % i * 50
            kind = i % 4
            if kind in (0, 2):
                sock.sendall(payload)
            if kind in (0, 1):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
            elif kind == 2:
                sock.shutdown(socket.SHUT_WR)
                digests.append(hashlib.sha256(payload).hexdigest())
            sock.close()
    finally:
        os.kill(pid, signal.SIGCONT)
    return digests


def arrived(report: dict[str, Any], digests: list[str]) -> int:
    return sum(d in report["digests"] for d in digests)


def check_frozen(pid: int, port: int) -> dict[str, int]:
    """The frozen clients through the forwarder at ``pid``: how many target
    connections they made, and how many half-closed payloads arrived."""
    before = clients.tally(port)
    digests = frozen_clients(pid, port)
    clients.wait_until(
        lambda: arrived(clients.tally(port), digests) == len(digests), 30, 0.2
    )
    time.sleep(1.0)  # a late one would show by now
    after = clients.tally(port)
    return {
        "clients": FROZEN,
        "half_closed": len(digests),
        "arrived": arrived(after, digests),
        "target_connections": after["accepted"] - before["accepted"],
    }


class Sampler:
    """The forwarder's most threads and connections on its port (sampled)."""

    def __init__(self, pid: int, port: int) -> None:
        self.pid, self.port = pid, port
        self.peak_threads = 0
        self.peak_connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            self.peak_threads = max(self.peak_threads, threads(self.pid))
            held = clients.tcp_connections([self.pid], self.port)
            self.peak_connections = max(self.peak_connections, held)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_burst(pid: int, port: int, idle_threads: int) -> dict[str, Any]:
    """The burst and a bystander through the forwarder at ``pid`` listening
    on ``port``; then how long until it had let go of everything."""
    before = clients.tally(port)
    with Sampler(pid, port) as sampler:
        bursts = [
            workload("burst", "127.0.0.1", port, SECONDS, RATE / CLIENTS, f"b{k}")
            for k in range(CLIENTS)
        ]
        by = workload("bystander", "127.0.0.1", port, SECONDS, 0.1)
        made = [result(p) for p in bursts]
        ended = time.monotonic()
        bystander = result(by)
        # Drained: back to the idle thread count, and no connection held.
        while not (
            threads(pid) <= idle_threads and clients.tcp_connections([pid], port) == 0
        ):
            if time.monotonic() - ended > 60:
                break
            time.sleep(0.05)
        drained = time.monotonic() - ended
    expected = [d for m in made for d in m["digests"]]
    deadline = time.monotonic() + 30  # for stragglers, if any
    while arrived(after := clients.tally(port), expected) < len(expected):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    kinds = {k: sum(m["made"][k] for m in made) for k in made[0]["made"]}
    target = after["accepted"] - before["accepted"] - bystander["count"]
    return {
        "made": kinds,
        "rate": sum(kinds.values()) / max(m["seconds"] for m in made),
        "connect_failed": sum(m["failed"] for m in made),
        "expected": len(expected),
        "arrived": arrived(after, expected),
        "target_connections": target,
        "drain_s": round(drained, 2),
        "peak_threads": sampler.peak_threads,
        "idle_threads": idle_threads,
        "peak_connections": sampler.peak_connections,
        "bystander_worst_s": round(bystander["worst_s"], 3),
        "bystander_median_s": round(bystander["median_s"], 3),
        "bystander_rounds": bystander["count"],
        "bystander_errors": bystander["error_count"],
    }


def settled_threads(pid: int) -> int:
    """The forwarder's thread count once it stopped changing for 0.5 s."""
    count = threads(pid)
    for _ in range(20):
        time.sleep(0.5)
        count, last = threads(pid), count
        if count == last:
            break
    return count


def test_clients_waiting_for_a_frozen_server_hold_no_thread_each(
    manager: Manager, fresh_sshd: SshServer, targets: Targets
) -> None:
    """300 clients while the server answers nothing: a bounded number of
    opens in flight, the rest queued, and not one thread more in the engine
    (there was one per client, polling); all served once it answers."""
    tunnel = manager.open(
        fresh_sshd.line(*ANY_USER, "-L", f"0:{targets.host}:{targets.tally}")
    )
    port = tunnel.forwards[0].listen_port
    pid = manager.engine_pid
    assert port is not None and pid is not None
    clients.tally(port)
    idle = settled_threads(pid)
    server = [fresh_sshd.pid, *procs.descendants(fresh_sshd.pid)]
    socks, payloads = [], []
    for pid_ in server:
        os.kill(pid_, signal.SIGSTOP)
    try:
        for i in range(300):
            sock = socket.create_connection(("127.0.0.1", port), 5)
            payloads.append(b"waiting %d " % i * 10)
            sock.sendall(payloads[-1])
            sock.shutdown(socket.SHUT_WR)
            socks.append(sock)
        clients.wait_until(lambda: tunnel.forwards[0].stats.connections_open == 300, 10)
        time.sleep(0.5)
        waiting = threads(pid)
    finally:
        for pid_ in server:
            os.kill(pid_, signal.SIGCONT)
    replies = [clients.recv_all(sock, 30) for sock in socks]
    for sock in socks:
        sock.close()
    print(f"\nengine threads: idle {idle}, with 300 clients waiting {waiting}")
    assert waiting <= idle
    assert replies == [
        b"%d %s\n" % (len(p), hashlib.sha256(p).hexdigest().encode()) for p in payloads
    ]


@pytest.fixture
def manager() -> Iterator[Manager]:
    manager = Manager(engine="process")
    yield manager
    manager.close()


def test_a_burst_of_short_connections_drains_and_starves_nobody(
    manager: Manager, sshd: SshServer, targets: Targets
) -> None:
    tunnel = manager.open(
        sshd.line(*ANY_USER, "-L", f"0:{targets.host}:{targets.tally}")
    )
    fwd = tunnel.forwards[0]
    port = fwd.listen_port
    assert port is not None
    pid = manager.engine_pid
    assert pid is not None
    clients.tally(port)  # warm up: the first connection starts what lives on

    frozen = check_frozen(pid, port)
    print(f"\nnbtunnel, clients that gave up while it was stopped: {frozen}")
    assert frozen["arrived"] == frozen["half_closed"]
    # Only the half-closed ones: none for a client that had reset, or
    # closed without a byte, before its channel could open.
    assert frozen["target_connections"] == frozen["half_closed"]

    failed_before = fwd.stats.connections_failed
    burst = run_burst(pid, port, settled_threads(pid))
    print(f"nbtunnel under the burst: {burst}")
    assert burst["bystander_errors"] == 0
    assert burst["bystander_worst_s"] < STARVED
    assert burst["drain_s"] < 10.0
    assert burst["arrived"] == burst["expected"]
    assert fwd.stats.connections_failed == failed_before, fwd.stats.last_error
    assert tunnel.state == "up"

    with openssh_forward(sshd, [f"{targets.host}:{targets.tally}"]) as ssh:
        clients.tally(ssh.ports[0])
        ssh_frozen = check_frozen(ssh.pid, ssh.ports[0])
        print(f"ssh -L, clients that gave up while it was stopped: {ssh_frozen}")
        ssh_burst = run_burst(ssh.pid, ssh.ports[0], settled_threads(ssh.pid))
        print(f"ssh -L under the burst: {ssh_burst}")
