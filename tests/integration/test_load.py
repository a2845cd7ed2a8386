"""Load: 1000 connections at once through one ``-L``, 200 through one ``-D``.

Every connection is through to the target (the sshd holds one connection to
the echo service per forwarded connection, counted from /proc) before any
byte moves, then all of them echo 64 KiB each at once, every byte compared.
The sshd is a test's own (``fresh_sshd``), so what it holds is ours alone;
in netns mode the echo service is on the server namespace's loopback, where
only the sshd reaches it.

File descriptors: 1000 connections take 1000+ fds here, in the engine, in
the sshd session and in the targets process.  The rig lifts the soft
RLIMIT_NOFILE to the hard limit (``tests.rig.raise_nofile_limit``, called by
the ``rig`` fixture and again here before the engine starts, which inherits
it; the sshd and the targets lift theirs the same way).  Where the hard limit
is below ~1200, raise it before running pytest: ``ulimit -Hn 65536`` as root,
``docker run --ulimit nofile=65536`` for a container, or ``LimitNOFILE=`` in
a systemd unit.  The test fails saying so rather than with EMFILE midway.
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
from collections.abc import Callable, Sequence

import pytest
from nbtunnel import Manager

from tests.rig import clients, procs, raise_nofile_limit
from tests.rig.data import BLOCK, block, pattern
from tests.rig.launcher import Targets
from tests.rig.sshd import SshServer

pytestmark = pytest.mark.integration

SIZE = BLOCK  # 64 KiB a connection; block(k) differs for every k
N_LOCAL = 1000
N_SOCKS = 200


def nofile_limit(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as f:
        line = next(x for x in f if x.startswith("Max open files"))
    return int(line.split()[3])


def require_fds(manager: Manager, n: int) -> None:
    engine = manager.engine_pid
    assert engine is not None
    margin = n + 200
    for who, pid in (("this process", os.getpid()), ("the engine", engine)):
        limit = nofile_limit(pid)
        assert limit >= margin, (
            f"{who} may open {limit} fds, {margin} needed: raise the hard "
            "RLIMIT_NOFILE before pytest (see this module's docstring)"
        )


def held_at_server(server: SshServer, targets: Targets) -> int:
    return clients.tcp_connections(procs.descendants(server.pid), targets.echo)


def open_all(connect: Callable[[int], socket.socket], n: int) -> list[socket.socket]:
    """connect(i) for i < n, 200 at a time; none left open on failure."""
    with concurrent.futures.ThreadPoolExecutor(200) as pool:
        futures = [pool.submit(connect, i) for i in range(n)]
    opened = [f.result() for f in futures if f.exception() is None]
    failed = [f.exception() for f in futures if f.exception() is not None]
    if failed:
        for sock in opened:
            sock.close()
        raise AssertionError(f"{len(failed)} of {n} connects failed: {failed[:3]}")
    return opened


def echo_all(
    socks: Sequence[socket.socket],
    server: SshServer,
    targets: Targets,
) -> list[bool]:
    """Wait until every connection reaches the target through the sshd, then
    echo a different 64 KiB on each, all at once; which came back intact."""
    n = len(socks)
    clients.wait_until(
        lambda: held_at_server(server, targets) >= n,
        60,
        0.2,
        f"the sshd holding {n} connections to the echo target",
    )
    payloads = [block(k) for k in range(n)]
    back = clients.echo_at_once(socks, payloads, timeout=180)
    return [b == p for b, p in zip(back, payloads, strict=True)]


def assert_all_closed(fwd, server: SshServer, targets: Targets) -> None:
    clients.wait_until(lambda: fwd.stats.connections_open == 0, 30)
    clients.wait_until(lambda: held_at_server(server, targets) == 0, 30)


@pytest.mark.slow
def carry_all(
    socks: Sequence[socket.socket], fwd, server: SshServer, targets: Targets
) -> None:
    """Echo through every connection at once; every byte arrived, was
    counted, and every connection closed."""
    n = len(socks)
    try:
        ok = echo_all(socks, server, targets)
    finally:
        for sock in socks:
            sock.close()
    bad = [i for i, good in enumerate(ok) if not good]
    assert not bad, f"{len(bad)} of {n} echoes differ, e.g. {bad[:10]}"
    stats = fwd.stats
    assert stats.connections_total == n
    assert stats.connections_failed == 0
    assert stats.bytes_to_target == n * SIZE
    assert stats.bytes_from_target == n * SIZE
    assert_all_closed(fwd, server, targets)


def test_1000_concurrent_connections_through_one_local_forward(
    fresh_sshd, targets
) -> None:
    raise_nofile_limit()
    manager = Manager(engine="process")
    try:
        t = manager.open(fresh_sshd.line("-L", f"0:{targets.host}:{targets.echo}"))
        fwd = t.forwards[0]
        require_fds(manager, N_LOCAL)
        port = fwd.listen_port
        socks = open_all(
            lambda _: socket.create_connection(("127.0.0.1", port), 60), N_LOCAL
        )
        carry_all(socks, fwd, fresh_sshd, targets)
        # And it serves on, as much as before.
        data = pattern(4 * 1024 * 1024)
        assert clients.echo_roundtrip("127.0.0.1", port, data, 60) == data
        assert t.state == "up" and fwd.state == "up"
    finally:
        manager.close()


def test_200_concurrent_socks_clients_through_one_dynamic_forward(
    fresh_sshd, targets
) -> None:
    raise_nofile_limit()
    manager = Manager(engine="process")
    try:
        t = manager.open(fresh_sshd.line("-D", "0"))
        fwd = t.forwards[0]
        require_fds(manager, N_SOCKS)
        port = fwd.listen_port
        # Every kind of request, interleaved; all handshakes at once.
        kinds = [
            ("5", "localhost"),
            ("5", targets.host),
            ("4a", "localhost"),
            ("4", targets.host),
        ]

        def connect(i: int) -> socket.socket:
            version, host = kinds[i % len(kinds)]
            return clients.socks_connect(
                "127.0.0.1", port, host, targets.echo, version=version, timeout=60
            )

        socks = open_all(connect, N_SOCKS)
        carry_all(socks, fwd, fresh_sshd, targets)
        data = pattern(4 * 1024 * 1024)
        assert clients.socks_echo(
            port, "localhost", targets.echo, data, timeout=60
        ) == (data)
        assert t.state == "up" and fwd.state == "up"
    finally:
        manager.close()
