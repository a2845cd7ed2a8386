"""1000 open/stop cycles of a tunnel with -L, -R and -D leave nothing behind.

Each cycle logs in to a real sshd (a test's own, so its sessions are ours
alone), carries one echo through each forward and stops.  Afterwards the
threads and fds are back where they were: in the engine process (the
default engine), or in this process with the inline engine; and the sshd has
no session left.  The -R listens on the server's own address (GatewayPorts
clientspecified), so this process reaches it through the sshd, which sends
each connection back over the tunnel to an echo service here.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import pytest
from nbtunnel import Manager

from tests.rig import clients
from tests.rig.launcher import Targets
from tests.rig.sshd import SshServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CYCLES = 1000
WARM_UP = 3  # first uses start what lives on: imports, the engine's threads


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def thread_names() -> list[str]:
    return sorted(t.name for t in threading.enumerate())


def cycle(
    manager: Manager, server: SshServer, targets: Targets, here: Targets, i: int
) -> None:
    """Open -L, -R and -D on one connection, echo through each, stop."""
    line = server.line(
        "-L",
        f"0:{targets.host}:{targets.echo}",
        "-R",
        f"{server.host}:0:127.0.0.1:{here.echo}",
        "-D",
        "0",
    )
    data = b"cycle %d " % i * 100
    with manager.open(line) as t:
        local, remote, dynamic = t.forwards
        assert clients.echo_roundtrip("127.0.0.1", local.listen_port, data, 10) == data
        assert clients.echo_roundtrip(server.host, remote.listen_port, data, 10) == data
        back = clients.socks_echo(dynamic.listen_port, "localhost", targets.echo, data)
        assert back == data


def run_cycles(
    manager: Manager, server: SshServer, targets: Targets, here: Targets
) -> None:
    started = time.monotonic()
    for i in range(CYCLES):
        cycle(manager, server, targets, here, i)
    took = time.monotonic() - started
    print(f"\n{CYCLES} cycles ({manager.mode} engine) in {took:.1f} s")


def assert_back_to(before: object, measure: Callable[[], object], what: str) -> None:
    """``measure()`` returns to ``before`` within a few seconds (threads exit
    a moment after they are joined)."""
    try:
        clients.wait_until(lambda: measure() == before, 10, 0.1)
    except TimeoutError:
        raise AssertionError(f"{what}: {before} -> {measure()}") from None


def assert_server_settles(server: SshServer, listener_fds: int) -> None:
    clients.wait_until(
        lambda: not server.session_pids(), 10, message="every sshd session ended"
    )
    assert fds(server.pid) == listener_fds


def warm_up(
    manager: Manager, server: SshServer, targets: Targets, here: Targets
) -> int:
    """A few cycles; then the sshd's listener fds, once its sessions ended."""
    for i in range(WARM_UP):
        cycle(manager, server, targets, here, i)
    clients.wait_until(lambda: not server.session_pids(), 10)
    time.sleep(0.2)
    return fds(server.pid)


@pytest.mark.timeout(900)
def test_no_leaks_in_the_engine_process(fresh_sshd, targets, here) -> None:
    manager = Manager(engine="process")
    try:
        listener_fds = warm_up(manager, fresh_sshd, targets, here)
        engine = manager.engine_pid
        assert engine is not None

        def measure() -> tuple[int, int, int, list[str]]:
            return fds(engine), threads(engine), fds(os.getpid()), thread_names()

        before = measure()
        run_cycles(manager, fresh_sshd, targets, here)
        assert manager.engine_pid == engine, "the engine was restarted midway"
        assert_back_to(
            before, measure, "(engine fds, engine threads, our fds, our threads)"
        )
        assert_server_settles(fresh_sshd, listener_fds)
    finally:
        manager.close()


@pytest.mark.timeout(900)
def test_no_leaks_in_the_caller_with_the_inline_engine(
    fresh_sshd, targets, here
) -> None:
    manager = Manager(engine="inline")
    try:
        listener_fds = warm_up(manager, fresh_sshd, targets, here)

        def measure() -> tuple[int, list[str]]:
            return fds(os.getpid()), thread_names()

        before = measure()
        run_cycles(manager, fresh_sshd, targets, here)
        assert_back_to(before, measure, "(our fds, our threads)")
        assert_server_settles(fresh_sshd, listener_fds)
    finally:
        manager.close()
