"""Local forwards (-L) end to end through the rig's real OpenSSH sshd.

In netns mode the targets listen on the server namespace's own loopback,
so every byte that arrives proves it went through the SSH server.
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
from pathlib import Path

import nbtunnel
import pytest
from nbtunnel import Manager

from tests.rig import clients
from tests.rig.data import expected_sha256, pattern
from tests.rig.sshd import free_port

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def test_echo_8_mib_unchanged(manager: Manager, sshd, targets) -> None:
    with manager.open(sshd.line("-L", f"0:{targets.host}:{targets.echo}")) as t:
        fwd = t.forwards[0]
        assert t.state == "up" and fwd.state == "up"
        assert fwd.kind == "local"
        assert fwd.listen_host == "127.0.0.1" and fwd.listen_port > 0
        assert (fwd.target_host, fwd.target_port) == (targets.host, targets.echo)
        data = pattern(8 * MiB)
        back = clients.echo_roundtrip("127.0.0.1", fwd.listen_port, data, timeout=60)
        assert back == data
        stats = fwd.stats
        assert stats.bytes_to_target == len(data)
        assert stats.bytes_from_target == len(data)
        assert stats.connections_total == 1


def test_upload_64_mib_to_sink(manager: Manager, sshd, targets) -> None:
    with manager.open(sshd.line("-L", f"0:{targets.host}:{targets.sink}")) as t:
        port = t.forwards[0].listen_port
        count, digest = clients.sink_upload("127.0.0.1", port, 64 * MiB)
        assert count == 64 * MiB
        assert digest == expected_sha256(64 * MiB)
        assert t.stats.bytes_to_target == 64 * MiB


def test_download_10_mb_over_http(manager: Manager, sshd, targets) -> None:
    with manager.open(sshd.line("-L", f"0:{targets.host}:{targets.http}")) as t:
        port = t.forwards[0].listen_port
        status, body = clients.http_get("127.0.0.1", port, "/bytes/10000000")
        assert status == 200
        assert len(body) == 10_000_000
        assert body == pattern(10_000_000)


def test_200_concurrent_connections(process_manager: Manager, sshd, targets) -> None:
    t = process_manager.open(sshd.line("-L", f"0:{targets.host}:{targets.echo}"))
    try:
        port = t.forwards[0].listen_port
        payloads = [os.urandom(256 * 1024) for _ in range(200)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
            results = list(
                pool.map(
                    lambda d: clients.echo_roundtrip("127.0.0.1", port, d, timeout=90),
                    payloads,
                )
            )
        assert sum(r == d for r, d in zip(results, payloads, strict=False)) == 200
        stats = t.stats
        assert stats.connections_total == 200
        assert stats.bytes_to_target == 200 * 256 * 1024
        # The forward keeps serving afterwards.
        assert (
            clients.echo_roundtrip("127.0.0.1", port, b"again", timeout=10) == b"again"
        )
    finally:
        t.stop()


def test_several_forwards_ride_one_connection(manager: Manager, sshd, targets) -> None:
    before = set(sshd.session_pids())
    line = sshd.line(
        "-L",
        f"0:{targets.host}:{targets.echo}",
        "-L",
        f"0:{targets.host}:{targets.http}",
    )
    with manager.open(line) as t:
        echo, http = t.forwards
        assert clients.echo_roundtrip("127.0.0.1", echo.listen_port, b"hi", 10) == b"hi"
        assert clients.http_get("127.0.0.1", http.listen_port, "/")[0] == 200
        # OpenSSH forks one process per connection (plus a privsep parent as
        # root); two forwards must not have opened two SSH connections.
        new = set(sshd.session_pids()) - before
        assert 1 <= len(new) <= 2


def test_port_closed_after_stop(manager: Manager, sshd, targets) -> None:
    t = manager.open(sshd.line("-L", f"0:{targets.host}:{targets.echo}"))
    port = t.forwards[0].listen_port
    assert clients.echo_roundtrip("127.0.0.1", port, b"x", 10) == b"x"
    t.stop()
    t.stop()  # idempotent
    assert clients.port_is_closed("127.0.0.1", port)
    assert t.state == "stopped" and t.forwards[0].state == "stopped"
    assert t not in manager.tunnels()


def test_port_closed_after_with_block(manager: Manager, sshd, targets) -> None:
    with manager.open(sshd.line("-L", f"0:{targets.host}:{targets.echo}")) as t:
        port = t.forwards[0].listen_port
    assert clients.port_is_closed("127.0.0.1", port)


def test_port_closed_after_stop_all(sshd, targets) -> None:
    ports = []
    for i in range(2):
        # Named: the same line unnamed would be the same tunnel again.
        line = sshd.line("-L", f"0:{targets.host}:{targets.echo}")
        t = nbtunnel.open(line, name=f"t{i}")
        ports.append(t.forwards[0].listen_port)
    assert len(nbtunnel.tunnels()) == 2
    nbtunnel.stop_all()
    assert nbtunnel.tunnels() == []
    for port in ports:
        assert clients.port_is_closed("127.0.0.1", port)


def test_fixed_port_and_explicit_bind(manager: Manager, sshd, targets) -> None:
    port = free_port()
    with manager.open(
        sshd.line("-L", f"127.0.0.1:{port}:{targets.host}:{targets.echo}")
    ) as t:
        assert t.forwards[0].listen_port == port
        assert clients.echo_roundtrip("127.0.0.1", port, b"fixed", 10) == b"fixed"


def test_ipv6_listener(manager: Manager, sshd, targets) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    with manager.open(sshd.line("-L", f"[::1]:0:{targets.host}:{targets.echo}")) as t:
        fwd = t.forwards[0]
        assert fwd.listen_host == "::1"
        assert clients.echo_roundtrip("::1", fwd.listen_port, b"six", 10) == b"six"


def test_local_unix_socket_listener(
    manager: Manager, sshd, targets, tmp_path: Path
) -> None:
    path = tmp_path / "echo.sock"
    with manager.open(sshd.line("-L", f"{path}:{targets.host}:{targets.echo}")) as t:
        assert t.forwards[0].listen_path == str(path)
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(path))
            s.sendall(b"through a unix socket")
            s.shutdown(socket.SHUT_WR)
            assert clients.recv_all(s) == b"through a unix socket"
    assert not path.exists()


def test_refused_target_closes_one_connection_and_keeps_the_tunnel(
    manager: Manager, sshd, targets
) -> None:
    line = sshd.line(
        "-L",
        f"0:{targets.host}:{targets.refused_port}",
        "-L",
        f"0:{targets.host}:{targets.echo}",
    )
    with manager.open(line) as t:
        bad, good = t.forwards
        with socket.create_connection(("127.0.0.1", bad.listen_port), timeout=10) as s:
            s.settimeout(10)
            # The server could not connect: ssh closes the local connection.
            assert clients.recv_all(s) == b""
        clients.wait_until(lambda: bad.stats.last_error is not None, 10)
        error = bad.stats.last_error
        assert error is not None
        assert f"{targets.host}:{targets.refused_port}" in error
        assert "connect failed" in error.lower() or "refused" in error.lower()
        assert bad.stats.connections_failed == 1
        assert t.state == "up" and bad.state == "up"
        assert clients.echo_roundtrip("127.0.0.1", good.listen_port, b"ok", 10) == b"ok"
        with socket.create_connection(("127.0.0.1", bad.listen_port), timeout=10) as s:
            s.settimeout(10)
            assert clients.recv_all(s) == b""


@pytest.mark.netns
def test_target_is_reachable_only_through_the_server(
    manager: Manager, sshd, targets
) -> None:
    # The target's own address, from here, is someone else's loopback.
    with manager.open(sshd.line("-L", f"0:localhost:{targets.http}")) as t:
        status, body = clients.http_get("127.0.0.1", t.forwards[0].listen_port, "/")
        assert status == 200 and b"nbtunnel rig" in body


def test_unix_socket_on_the_server(manager: Manager, sshd, targets) -> None:
    # -L port:remote_socket (direct-streamlocal), as for PostgreSQL's socket.
    with manager.open(sshd.line("-L", f"0:{targets.unix_echo}")) as t:
        fwd = t.forwards[0]
        assert fwd.target_path == str(targets.unix_echo) and fwd.target_host is None
        data = pattern(1 * MiB)
        assert clients.echo_roundtrip("127.0.0.1", fwd.listen_port, data) == data
        assert fwd.stats.bytes_to_target == len(data)
        assert "the server connects to " + str(targets.unix_echo) in repr(fwd)


def test_a_missing_server_socket_fails_one_connection(
    manager: Manager, sshd, targets, tmp_path: Path
) -> None:
    missing = tmp_path / "nobody-here.sock"
    with manager.open(sshd.line("-L", f"0:{missing}")) as t:
        fwd = t.forwards[0]
        with socket.create_connection(("127.0.0.1", fwd.listen_port), timeout=10) as s:
            assert clients.recv_all(s, 10) == b""
        stats = clients.wait_until(lambda: fwd.stats.connections_failed and fwd.stats)
        assert f"the unix socket {missing}" in (stats.last_error or "")
        assert t.state == "up" and fwd.state == "up"
