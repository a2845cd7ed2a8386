"""Faults against the rig's real sshd: a dead server is noticed (ServerAliveInterval),
a lost connection comes back with every forward on its old port, and what
cannot come back says why.

Keepalives run at 1 s x 2 here so that a dead peer shows within seconds.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nbtunnel import Manager
from nbtunnel.grammar.spec import parse
from nbtunnel.settings.resolve import resolve
from nbtunnel.ssh.connection import Connection

from tests.rig import clients, procs
from tests.rig.data import expected_sha256
from tests.rig.sshd import SshServer, locked_copy

pytestmark = pytest.mark.integration

ALIVE = ("-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2")
MIB = 1024 * 1024


def _line(server: SshServer, *forwards: str) -> str:
    return server.line(*ALIVE, *forwards)


def _events(tunnel) -> str:
    return "\n".join(tunnel.events)


def _wait_up_again(tunnel, timeout: float = 20) -> None:
    clients.wait_until(
        lambda: "reconnected" in _events(tunnel) and tunnel.state == "up",
        timeout,
        message=f"tunnel up again (events: {_events(tunnel)})",
    )


@contextlib.contextmanager
def _frozen(server: SshServer) -> Iterator[list[int]]:
    """Every session of the server stopped (SIGSTOP): its TCP stays up, no
    SSH packet comes back.  Killed at the end (they are our sshd's)."""
    pids = [p for s in server.session_pids() for p in (s, *procs.descendants(s))]
    assert pids, "no session to freeze"
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield pids
    finally:
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGCONT)


def test_a_silent_server_is_noticed_and_the_tunnel_reconnects(
    manager: Manager, fresh_sshd: SshServer, targets
) -> None:
    """Its TCP connection stays up, so only a probe that wants a reply notices."""
    server = fresh_sshd
    with manager.open(_line(server, "-L", f"0:{targets.host}:{targets.echo}")) as t:
        port = t.forwards[0].listen_port
        with _frozen(server):
            started = time.monotonic()
            clients.wait_until(lambda: t.state == "reconnecting", 10)
            noticed = time.monotonic() - started
            # 1 s x (2 + 1), give or take a tick.
            assert 2.0 <= noticed <= 5.5, noticed
            assert "ServerAliveInterval 1, ServerAliveCountMax 2" in str(t.error)
            # The listener never moves: a new session serves the same port.
            _wait_up_again(t)
        assert t.forwards[0].listen_port == port
        assert clients.echoes(t, b"after the silence")


def test_without_keepalives_a_silent_server_goes_unnoticed(
    manager: Manager, fresh_sshd: SshServer, targets
) -> None:
    """The control of the test above: ServerAliveInterval 0 is ssh's default."""
    server = fresh_sshd
    line = server.line(
        "-o", "ServerAliveInterval=0", "-L", f"0:{targets.host}:{targets.echo}"
    )
    with manager.open(line) as t, _frozen(server):
        time.sleep(4)
        assert t.state == "up"


def test_a_restarted_server_gets_every_forward_back(
    manager: Manager, fresh_sshd: SshServer, targets, here
) -> None:
    server = fresh_sshd
    fixed = int(clients.on_server(server, "free-port")["port"])
    line = _line(
        server,
        "-L",
        f"0:{targets.host}:{targets.echo}",
        "-D",
        "0",
        "-R",
        f"127.0.0.1:{fixed}:127.0.0.1:{here.echo}",
        "-R",
        f"127.0.0.1:0:127.0.0.1:{here.echo}",
    )
    with manager.open(line) as t:
        local, socks, remote, any_port = t.forwards
        ports = (local.listen_port, socks.listen_port)
        assert remote.listen_port == fixed
        started = time.monotonic()
        server.restart()  # a crash: every session killed, then back
        _wait_up_again(t)
        took = time.monotonic() - started
        assert took < 5, took
        assert (local.listen_port, socks.listen_port) == ports
        assert clients.echoes(t, b"-L is back")
        data = b"-D is back"
        assert clients.socks_echo(socks.listen_port, targets.host, targets.echo, data)
        # -R: the fixed port again; port 0 whatever the server gave now, said.
        assert remote.listen_port == fixed and remote.state == "up"
        assert clients.on_server(server, "echo", "127.0.0.1", fixed, 10_000)["ok"]
        new = any_port.listen_port
        assert new and any_port.state == "up"
        assert f"Allocated port {new}" in _events(t).split("reconnecting")[-1]
        assert clients.on_server(server, "echo", "127.0.0.1", new, 10_000)["ok"]
        events = _events(t)
        assert events.index("reconnecting") < events.index("reconnected")


@pytest.mark.netns
def test_a_cut_network_is_noticed_and_healed_with_the_port_bound_throughout(
    manager: Manager, fresh_sshd: SshServer, targets, isolated
) -> None:
    server = fresh_sshd
    with manager.open(_line(server, "-L", f"0:{targets.host}:{targets.echo}")) as t:
        port = t.forwards[0].listen_port
        with isolated.cut():
            clients.wait_until(lambda: t.state == "reconnecting", 10)
            assert "did not answer" in str(t.error)
            # Still bound: the connection is taken, then closed with a word
            # once the outage outlasts the wait (never left hanging).
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.settimeout(20)
                assert clients.recv_all(s, 20) == b""
            failed = t.forwards[0].stats.last_error
            assert "is down" in str(failed) and "reconnecting" in str(failed)
            assert t.forwards[0].state == "reconnecting"
        _wait_up_again(t, 30)
        assert t.forwards[0].listen_port == port
        assert clients.echoes(t, b"the network is back")


def test_a_connection_made_during_a_short_outage_waits_for_the_server(
    manager: Manager, fresh_sshd: SshServer, targets
) -> None:
    server = fresh_sshd
    with manager.open(_line(server, "-L", f"0:{targets.host}:{targets.echo}")) as t:
        port = t.forwards[0].listen_port
        server.stop(hard=True)
        clients.wait_until(lambda: t.state == "reconnecting", 10)
        got: list[bytes] = []
        client = threading.Thread(
            target=lambda: got.append(
                clients.echo_roundtrip("127.0.0.1", port, b"patience", 20)
            )
        )
        client.start()
        time.sleep(1)
        server.restart()
        client.join(30)
        assert got == [b"patience"]


def _download_until_killed(port: int, server: SshServer, n: int) -> tuple[int, str]:
    """Ask the source for n bytes; kill the server after the first MiB.

    Returns how many bytes came and how the download ended.
    """
    count = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.settimeout(10)
        sock.sendall(f"{n}\n".encode())
        killed = False
        try:
            while data := sock.recv(256 * 1024):
                count += len(data)
                if count >= MIB and not killed:
                    server.stop(hard=True)
                    killed = True
        except OSError as exc:
            return count, type(exc).__name__
    return count, "end of file"


def test_a_server_killed_mid_transfer_fails_it_and_the_next_one_succeeds(
    manager: Manager, fresh_sshd: SshServer, targets
) -> None:
    server = fresh_sshd
    size = 64 * MIB
    line = _line(
        server,
        "-L",
        f"0:{targets.host}:{targets.source}",
        "-L",
        f"0:{targets.host}:{targets.sink}",
    )
    with manager.open(line) as t:
        source, sink = (f.listen_port for f in t.forwards)
        started = time.monotonic()
        count, ending = _download_until_killed(source, server, size)
        # Cut short within seconds, never hanging (the socket timeout is 10 s
        # and the test's own 120 s).
        assert MIB <= count < size, (count, ending)
        # A reset, not an end-of-file that would pass for the whole file.
        assert ending == "ConnectionResetError"
        assert time.monotonic() - started < 10
        clients.wait_until(
            lambda: (
                any(
                    "SSH connection was lost" in str(f.stats.last_error)
                    or "without end-of-file" in str(f.stats.last_error)
                    for f in t.forwards
                )
                or "closed" in _events(t)
            ),
            10,
        )
        server.restart()
        _wait_up_again(t)
        assert clients.source_download("127.0.0.1", source, size) == (
            size,
            expected_sha256(size),
        )
        assert clients.sink_upload("127.0.0.1", sink, size) == (
            size,
            expected_sha256(size),
        )


def test_an_upload_cut_by_a_killed_server_fails_on_both_ends(
    manager: Manager, fresh_sshd: SshServer, targets
) -> None:
    server = fresh_sshd
    size = 64 * MIB
    with manager.open(_line(server, "-L", f"0:{targets.host}:{targets.sink}")) as t:
        port = t.forwards[0].listen_port
        sent = 0
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.settimeout(10)
            block = b"u" * MIB
            with pytest.raises(OSError):
                while sent < size:
                    sock.sendall(block)
                    sent += len(block)
                    if sent == 4 * MIB:
                        server.stop(hard=True)
                # The sink's reply (count, digest) never comes: the server
                # side ended with sshd, so this end reads nothing or an error.
                sock.shutdown(socket.SHUT_WR)
                if not clients.recv_all(sock, 10):
                    raise ConnectionResetError("no reply from the sink")
        assert sent < size or t.state != "up"
        server.restart()
        _wait_up_again(t)
        assert clients.sink_upload("127.0.0.1", port, size) == (
            size,
            expected_sha256(size),
        )


def test_reconnect_no_fails_the_tunnel(
    manager: Manager, fresh_sshd: SshServer, targets
) -> None:
    server = fresh_sshd
    line = server.line("-o", "Reconnect=no", "-L", f"0:{targets.host}:{targets.echo}")
    with manager.open(line) as t:
        server.restart()
        clients.wait_until(lambda: t.state == "failed", 10)
        assert "Reconnect no" in str(t.error)
        assert t.forwards[0].state == "failed"
        time.sleep(1)
        assert "reconnected" not in _events(t)


def test_the_tries_run_out_after_reconnect_attempts(
    manager: Manager, fresh_sshd: SshServer, targets
) -> None:
    server = fresh_sshd
    line = _line(
        server,
        "-o",
        "ReconnectAttempts=3",
        "-o",
        "ReconnectMaxDelay=1",
        "-L",
        f"0:{targets.host}:{targets.echo}",
    )
    with manager.open(line) as t:
        port = t.forwards[0].listen_port
        server.stop(hard=True)
        clients.wait_until(lambda: t.state == "failed", 15)
        assert "in 3 tries (ReconnectAttempts 3)" in str(t.error)
        assert "refused" in str(t.error)
        events = _events(t)
        assert "reconnect try 1 failed" in events and "reconnect try 2 failed" in events
        # A failed tunnel's listener answers at once instead of waiting.
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            assert clients.recv_all(s, 5) == b""
        assert time.monotonic() - started < 2


@pytest.fixture
def locked_key(fresh_sshd: SshServer, tmp_path: Path) -> Path:
    """The server's client key, encrypted: logging in needs a person."""
    return locked_copy(fresh_sshd.client_key, tmp_path / "locked_ed25519", "sesame 42")


def test_a_login_that_needs_a_person_is_not_retried_behind_their_back(
    manager: Manager, fresh_sshd: SshServer, targets, locked_key: Path
) -> None:
    server = fresh_sshd
    # The rig's own line with the locked key in place of its key.
    args = server.args()
    args[args.index(str(server.client_key))] = str(locked_key)
    line = shlex.join(
        [*args, *ALIVE, "-L", f"0:{targets.host}:{targets.echo}", server.destination]
    )
    person = clients.Person("sesame 42")
    with manager.open(line, prompt=person) as t:
        server.restart()
        clients.wait_until(lambda: t.state == "failed", 15)
        assert "reconnecting to" in str(t.error)
        assert "passphrase" in str(t.error)
    assert len(person.asked) == 1  # at the open, never again


def test_stopping_while_reconnecting_is_prompt_and_leaves_no_thread(
    fresh_sshd: SshServer, targets
) -> None:
    server = fresh_sshd
    manager = Manager(engine="inline")
    try:
        before = {t.name for t in threading.enumerate()}
        t = manager.open(_line(server, "-L", f"0:{targets.host}:{targets.echo}"))
        port = t.forwards[0].listen_port
        server.stop(hard=True)
        clients.wait_until(lambda: "reconnect try 2 failed" in _events(t), 15)
        started = time.monotonic()
        t.stop()
        assert time.monotonic() - started < 2
        assert clients.port_is_closed("127.0.0.1", port)
        left = {t.name for t in threading.enumerate() if t.name.startswith("nbtunnel")}
        assert left <= before
    finally:
        manager.close()


def test_tcp_keepalive_follows_the_server_alive_schedule(sshd) -> None:
    alive = ("-o", "ServerAliveInterval=7", "-o", "ServerAliveCountMax=4")
    connection = Connection(resolve(parse(sshd.line(*alive, "-L", "1:h:2"))))
    connection.connect()
    try:
        transport = connection._transport
        assert transport is not None
        sock = transport.sock
        assert isinstance(sock, socket.socket)
        options = [
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        ]
        assert options == [1, 7, 7, 4]
    finally:
        connection.close()


def test_a_probe_in_flight_does_not_take_another_requests_reply(sshd) -> None:
    """keepalive@openssh.com is refused by every server; that refusal must not
    be read as the answer to the tcpip-forward sent right after it."""
    connection = Connection(resolve(parse(sshd.line("-R", "0:127.0.0.1:1"))))
    connection.connect()
    try:
        transport = connection._transport
        assert transport is not None
        for _ in range(20):
            transport.probe()
            listener = connection.listen_remote("127.0.0.1", 0, lambda c, o: None)
            assert listener.port
            connection.cancel_remote("127.0.0.1", listener.port)
    finally:
        connection.close()
