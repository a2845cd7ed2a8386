"""Shared connections: tunnels to one destination with the same settings log in
once and ride one SSH connection, which closes with the last of them."""

from __future__ import annotations

import threading

import pytest
from nbtunnel import Manager

from tests.rig import clients
from tests.rig.sshd import SshServer

pytestmark = pytest.mark.integration


def _logins(server: SshServer) -> int:
    return server.log.read_text(errors="replace").count("Accepted publickey")


def test_two_tunnels_one_login_closed_with_the_last(
    manager: Manager, fresh_sshd: SshServer, targets, here
) -> None:
    server = fresh_sshd
    # Names of their own: unnamed, the same destination would join one tunnel.
    first = manager.open(
        server.line("-L", f"0:{targets.host}:{targets.echo}"), name="first"
    )
    second = manager.open(
        server.line("-R", f"127.0.0.1:0:127.0.0.1:{here.echo}"), name="second"
    )
    third = manager.open(
        server.line("-L", f"0:{targets.host}:{targets.echo}"), name="third"
    )
    assert _logins(server) == 1
    assert len(server.session_pids()) == 1
    assert clients.echoes(first, b"shared") and clients.echoes(third, b"shared")
    remote = second.forwards[0].listen_port
    assert clients.on_server(server, "echo", "127.0.0.1", remote, 10_000)["ok"]

    # Stopping one tunnel leaves the others on the connection.
    second.stop()
    assert clients.wait_until(
        lambda: clients.on_server(server, "closed", "127.0.0.1", remote)["closed"], 10
    )
    assert clients.echoes(first, b"shared")
    first.stop()
    assert clients.port_is_closed("127.0.0.1", first.forwards[0].listen_port)
    assert clients.echoes(third, b"shared") and len(server.session_pids()) == 1
    third.stop()
    assert clients.wait_until(lambda: not server.session_pids(), 10)
    # A new tunnel after that logs in again.
    with manager.open(server.line("-L", f"0:{targets.host}:{targets.echo}")) as again:
        assert clients.echoes(again, b"shared")
    assert _logins(server) == 2


def test_other_settings_log_in_again(
    manager: Manager, fresh_sshd: SshServer, targets
) -> None:
    server = fresh_sshd
    forward = ("-L", f"0:{targets.host}:{targets.echo}")
    with (
        manager.open(server.line(*forward)) as a,
        manager.open(server.line("-o", "Compression=yes", *forward)) as b,
    ):
        assert clients.echoes(a, b"shared") and clients.echoes(b, b"shared")
        assert _logins(server) == 2
        assert len(server.session_pids()) == 2


def test_opens_at_the_same_time_log_in_once(
    manager: Manager, fresh_sshd: SshServer, targets
) -> None:
    server = fresh_sshd
    line = server.line("-L", f"0:{targets.host}:{targets.echo}")
    tunnels = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            tunnels.append(manager.open(line))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(tunnels) == 4 and all(clients.echoes(t, b"shared") for t in tunnels)
    assert _logins(server) == 1
    # The same line run four times at once is one tunnel (the manager's rules).
    assert all(t is tunnels[0] for t in tunnels)
    for t in tunnels:
        t.stop()
    assert clients.wait_until(lambda: not server.session_pids(), 10)


def test_a_lost_shared_connection_comes_back_once_for_every_tunnel_on_it(
    manager: Manager, fresh_sshd: SshServer, targets
) -> None:
    server = fresh_sshd
    line = server.line("-L", f"0:{targets.host}:{targets.echo}")
    a, b = manager.open(line, name="a"), manager.open(line, name="b")
    ports = [a.forwards[0].listen_port, b.forwards[0].listen_port]
    server.restart()  # every session killed
    assert clients.wait_until(
        lambda: "reconnected" in str(list(a.events) + list(b.events)), 15
    )
    assert clients.wait_until(lambda: a.state == b.state == "up", 15)
    assert clients.echoes(a, b"shared") and clients.echoes(b, b"shared")
    assert [a.forwards[0].listen_port, b.forwards[0].listen_port] == ports
    # Both ride one new connection: the second reconnect found the first's
    # (the log counts the first login too).
    assert _logins(server) == 2 and len(server.session_pids()) == 1
    a.stop()
    b.stop()
    assert clients.wait_until(lambda: not server.session_pids(), 10)


def test_without_reconnect_a_lost_shared_connection_fails_every_tunnel_on_it(
    manager: Manager, fresh_sshd: SshServer, targets
) -> None:
    server = fresh_sshd
    line = server.line("--no-reconnect", "-L", f"0:{targets.host}:{targets.echo}")
    a, b = manager.open(line, name="a"), manager.open(line, name="b")
    server.restart()  # every session killed
    assert clients.wait_until(lambda: a.state == b.state == "failed", 10)
    assert "Reconnect no" in str(a.error)
    # The next open does not reuse the dead connection.
    with manager.open(line) as c:
        assert clients.echoes(c, b"shared")
    a.stop()
    b.stop()
