"""Remote forwards (-R) end to end: the rig's real sshd listens, this machine serves.

The server-side clients run where sshd runs (tests.rig.probe through
clients.on_server); in netns mode that namespace cannot reach this machine's
loopback, so whatever they reach here came through the SSH connection.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from nbtunnel import ForwardError, Manager

from tests.rig import clients
from tests.rig.data import expected_sha256, pattern

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def _closed(sshd, port: int, host: str = "127.0.0.1") -> bool:
    return bool(clients.on_server(sshd, "closed", host, port)["closed"])


def _loopbacks(sshd) -> list[str]:
    return ["127.0.0.1", "::1"] if sshd.host6 else ["127.0.0.1"]


def test_dashboard_fetched_from_the_server_at_the_allocated_port(
    manager: Manager, sshd, here
) -> None:
    with manager.open(sshd.line("-R", f"0:127.0.0.1:{here.http}")) as t:
        fwd = t.forwards[0]
        assert fwd.kind == "remote" and fwd.state == "up"
        assert fwd.listen_host == "localhost"
        port = fwd.listen_port
        assert port is not None and port > 0
        assert fwd.note is None  # loopback: nothing for GatewayPorts to decide
        expected = {
            "status": 200,
            "length": 1_000_000,
            "sha256": expected_sha256(1_000_000),
        }
        # sshd binds "localhost" on ::1 and 127.0.0.1 with one allocated
        # port, and skips a family where another socket already has that
        # port: one of the two serves the dashboard, maybe not both.
        served = [
            host
            for host in _loopbacks(sshd)
            if clients.on_server(sshd, "http", host, port, "/bytes/1000000") == expected
        ]
        assert served
        assert fwd.stats.connections_total == len(served)
        assert fwd.stats.bytes_from_target > 1_000_000  # the body plus headers
        fwd.stop()
        assert fwd.state == "stopped" and t.state == "up"
        assert clients.wait_until(
            lambda: all(_closed(sshd, port, h) for h in served), 10
        )


def test_32_mib_pushed_from_the_server_arrive_unchanged(
    manager: Manager, sshd, here
) -> None:
    with manager.open(sshd.line("-R", f"127.0.0.1:0:127.0.0.1:{here.sink}")) as t:
        fwd = t.forwards[0]
        got = clients.on_server(sshd, "push", "127.0.0.1", fwd.listen_port, 32 * MiB)
        assert got == {"count": 32 * MiB, "sha256": expected_sha256(32 * MiB)}
        assert fwd.stats.bytes_to_target == 32 * MiB
    assert _closed(sshd, fwd.listen_port)


def test_stopping_one_remote_forward_leaves_the_others_working(
    manager: Manager, sshd, targets, here
) -> None:
    line = sshd.line(
        "-R",
        f"127.0.0.1:0:127.0.0.1:{here.echo}",
        "-R",
        f"127.0.0.1:0:127.0.0.1:{here.http}",
        "-L",
        f"0:{targets.host}:{targets.echo}",
    )
    with manager.open(line) as t:
        echo, http, local = t.forwards
        assert echo.listen_port != http.listen_port
        # Each -R reaches its own target although both share one connection.
        assert clients.on_server(sshd, "echo", "127.0.0.1", echo.listen_port, 100_000)
        got = clients.on_server(sshd, "http", "127.0.0.1", http.listen_port, "/bytes/5")
        assert got["status"] == 200
        echo.stop()
        assert echo.state == "stopped"
        assert clients.wait_until(lambda: _closed(sshd, echo.listen_port), 10)
        got = clients.on_server(sshd, "http", "127.0.0.1", http.listen_port, "/bytes/5")
        assert got["status"] == 200
        data = pattern(100_000)
        assert clients.echo_roundtrip("127.0.0.1", local.listen_port, data) == data
        assert [f.state for f in t.forwards] == ["stopped", "up", "up"]
        echo.stop()  # again: nothing happens
        with pytest.raises(ForwardError, match=f"tunnel {t.id} has no forward 3"):
            manager._engine.get().request("stop_forward", tunnel=t.id, forward=3)


def test_a_fixed_port_taken_on_the_server_fails_the_open(
    manager: Manager, sshd, here
) -> None:
    with manager.open(sshd.line("-R", f"127.0.0.1:0:127.0.0.1:{here.echo}")) as first:
        taken = first.forwards[0].listen_port
        before = set(sshd.session_pids())
        with pytest.raises(
            ForwardError, match=rf"refused to listen on 127.0.0.1:{taken}"
        ):
            # Another connection (other options) to the same server: the
            # manager cannot see the holder, so the server refuses.
            manager.open(
                sshd.line(
                    "-o",
                    "ServerAliveInterval=7",
                    "-R",
                    f"127.0.0.1:{taken}:127.0.0.1:{here.http}",
                )
            )
        # Nothing half-open: the refused tunnel's connection is gone ...
        assert clients.wait_until(lambda: set(sshd.session_pids()) == before, 10)
        assert manager.tunnels() == [first]
        # ... and the forward holding the port still serves.
        assert clients.on_server(sshd, "echo", "127.0.0.1", taken, 1000)["ok"]


def test_a_fixed_port_is_asked_for_and_used(manager: Manager, sshd, here) -> None:
    port = int(clients.on_server(sshd, "free-port")["port"])
    with manager.open(sshd.line("-R", f"127.0.0.1:{port}:127.0.0.1:{here.echo}")) as t:
        assert t.forwards[0].listen_port == port
        assert clients.on_server(sshd, "echo", "127.0.0.1", port, 1000)["ok"]


def test_a_wide_bind_says_that_the_server_decides(manager: Manager, sshd, here) -> None:
    with manager.open(sshd.line("-R", f"*:0:127.0.0.1:{here.echo}")) as t:
        fwd = t.forwards[0]
        assert fwd.listen_host == ""  # RFC 4254: every address
        assert "GatewayPorts" in (fwd.note or "")
        assert "GatewayPorts" in repr(fwd)
        # The rig's sshd has GatewayPorts clientspecified: its own address works.
        assert clients.on_server(sshd, "echo", sshd.host, fwd.listen_port, 1000)["ok"]


def test_a_refused_target_fails_one_connection_not_the_forward(
    manager: Manager, sshd, here
) -> None:
    line = sshd.line("-R", f"127.0.0.1:0:127.0.0.1:{here.refused_port}")
    with manager.open(line) as t:
        fwd = t.forwards[0]
        got = clients.on_server(sshd, "hung-up", "127.0.0.1", fwd.listen_port)
        assert got == {"hung_up": True}  # connected, then closed without a byte
        stats = clients.wait_until(lambda: fwd.stats.connections_failed and fwd.stats)
        assert "refused" in (stats.last_error or "").lower()
        assert f"127.0.0.1:{here.refused_port}" in (stats.last_error or "")
        assert fwd.state == "up" and t.state == "up"


def _server_dir(tmp_path: Path) -> Path:
    # sshd (root, or this user) creates the socket there; the namespace
    # shares this machine's filesystem.
    d = tmp_path / "server"
    d.mkdir()
    os.chmod(d, 0o777)
    return d


def test_remote_unix_socket_to_a_tcp_target(
    manager: Manager, sshd, here, tmp_path: Path
) -> None:
    path = _server_dir(tmp_path) / "dash.sock"
    with manager.open(sshd.line("-R", f"{path}:127.0.0.1:{here.echo}")) as t:
        fwd = t.forwards[0]
        assert fwd.listen_path == str(path) and fwd.listen_port is None
        assert clients.on_server(sshd, "echo-unix", path, 1 * MiB) == {"ok": True}
        fwd.stop()
        assert clients.wait_until(
            lambda: clients.on_server(sshd, "closed-unix", path)["closed"], 10
        )


def test_remote_unix_socket_to_a_local_unix_socket(
    manager: Manager, sshd, here, tmp_path: Path
) -> None:
    path = _server_dir(tmp_path) / "relay.sock"
    with manager.open(sshd.line("-R", f"{path}:{here.unix_echo}")) as t:
        assert clients.on_server(sshd, "echo-unix", path, 100_000) == {"ok": True}
        assert t.forwards[0].stats.bytes_to_target == 100_000


def test_remote_port_to_a_local_unix_socket(manager: Manager, sshd, here) -> None:
    with manager.open(sshd.line("-R", f"127.0.0.1:0:{here.unix_echo}")) as t:
        port = t.forwards[0].listen_port
        assert clients.on_server(sshd, "echo", "127.0.0.1", port, 100_000)["ok"]


def test_an_existing_file_at_the_socket_path_is_refused(
    manager: Manager, sshd, here, tmp_path: Path
) -> None:
    path = _server_dir(tmp_path) / "taken.sock"
    path.write_text("not a socket")
    with pytest.raises(
        ForwardError, match=rf"unix socket {path}.*StreamLocalBindUnlink"
    ):
        manager.open(sshd.line("-R", f"{path}:127.0.0.1:{here.echo}"))
    assert path.read_text() == "not a socket"


def test_remote_dynamic_forward_is_a_socks_proxy_on_the_server(
    manager: Manager, sshd, here
) -> None:
    with manager.open(sshd.line("-R", "127.0.0.1:0")) as t:
        fwd = t.forwards[0]
        assert fwd.kind == "remote" and fwd.target_host is None
        port = fwd.listen_port
        # The server reaches a service on this machine through the proxy,
        # named as this machine resolves it.
        for version, host in [
            ("5", "localhost"),
            ("5", "127.0.0.1"),
            ("4a", "localhost"),
        ]:
            got = clients.on_server(
                sshd, "socks-echo", port, host, here.echo, 1 * MiB, version
            )
            assert got == {"ok": True}, (version, host)
        got = clients.on_server(
            sshd, "socks-echo", port, "127.0.0.1", here.refused_port, 10, "5"
        )
        assert got == {"refused": 5}  # connection refused, in SOCKS5's words
        assert clients.on_server(
            sshd, "socks-echo", port, "localhost", here.echo, 10, "5"
        )
        assert fwd.stats.connections_failed == 1


def test_remote_dynamic_forward_with_no_bind_address(
    manager: Manager, sshd, here
) -> None:
    # "-R 0" as typed: the server binds "localhost", maybe on one family
    # only (see the dashboard test), so the proxy is looked for on both.
    with manager.open(sshd.line("-R", "0")) as t:
        port = t.forwards[0].listen_port
        served = [
            host
            for host in _loopbacks(sshd)
            if clients.on_server(
                sshd, "socks-echo", port, "localhost", here.echo, 1 * MiB, "5", host
            )
            == {"ok": True}
        ]
        assert served
