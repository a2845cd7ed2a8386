"""Clients that end their connections the hard way, against the rig's real sshd.

A client that sends, half-closes (``shutdown(SHUT_WR)``) and then closes
with a reset (``SO_LINGER`` 0), as HTTP clients and database drivers do on
errors, made the relay's EOF race its own close: paramiko sends a
channel's EOF after letting go of the channel's lock, so our CLOSE could
reach sshd first, sshd freed the channel and then dropped the whole SSH
connection on the late EOF ("ieof packet referred to nonexistent
channel"), resetting every connection of every forward on it.  Measured
before the fix, with these clients: 152 disconnects in 60 s; ``ssh -L``: none.

Each client here has an exchange first (so its channel is open whatever
the forward does with clients that leave before that), then sends, half-
closes and resets while the echo of what it sent is on its way back.

Each test has an sshd of its own, so that its log holds only what this
tunnel did; sshd logs at VERBOSE (the rig's LogLevel), where each of those
disconnects is a "Disconnecting ...: ieof packet referred to nonexistent
channel N" line.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time

import pytest
from nbtunnel import Manager

from tests.rig import clients
from tests.rig.data import expected_sha256
from tests.rig.openssh import openssh_forward
from tests.rig.sshd import SshServer

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
CLIENTS = 6
PAYLOAD = bytes(range(256)) * 16  # 4 KiB, echoed back into a reset socket
# What sshd logs when it drops a whole connection: a protocol error of
# ours ("... packet referred to nonexistent channel"), or any other.
DROPPED = re.compile(r"referred to nonexistent channel|Disconnecting|Connection reset")


def _half_close_then_reset(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        # A first exchange, as a request and its answer: the channel is
        # open, whatever the forward does with clients that leave earlier.
        sock.sendall(PAYLOAD)
        got = 0
        while got < len(PAYLOAD):
            data = sock.recv(len(PAYLOAD))
            if not data:
                raise ConnectionError("the echo ended early")
            got += len(data)
        sock.sendall(PAYLOAD)
        sock.shutdown(socket.SHUT_WR)
        # Closed with data unread (the echo on its way): a reset.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _storm(port: int, seconds: float) -> tuple[int, int]:
    """CLIENTS clients closing that way for ``seconds``: (connections, errors)."""
    done = [0] * CLIENTS
    failed = [0] * CLIENTS
    until = time.monotonic() + seconds

    def client(i: int) -> None:
        while time.monotonic() < until:
            try:
                _half_close_then_reset(port)
                done[i] += 1
            except OSError:
                failed[i] += 1  # e.g. while a dropped tunnel reconnects
                time.sleep(0.01)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done), sum(failed)


def _dropped(server: SshServer) -> list[str]:
    # A moment for sshd to log what it did last.
    time.sleep(1.0)
    lines = server.log.read_text(errors="replace").splitlines()
    return [line for line in lines if DROPPED.search(line)]


def _same_connection(server: SshServer, tunnel, sessions: list[int]) -> None:
    events = "\n".join(tunnel.events)
    assert "reconnect" not in events and "lost" not in events, events
    assert tunnel.state == "up", events
    # The same sshd process serves it: the SSH connection never changed.
    assert server.session_pids() == sessions


def test_half_close_then_reset_keeps_the_ssh_connection(
    process_manager: Manager, fresh_sshd: SshServer, targets
) -> None:
    """The short one: without the fix, sshd drops the connection within
    seconds (about twice a second, as measured)."""
    line = fresh_sshd.line("-L", f"0:{targets.host}:{targets.echo}")
    with process_manager.open(line) as t:
        port = t.forwards[0].listen_port
        assert port is not None
        sessions = fresh_sshd.session_pids()
        connections, errors = _storm(port, 5.0)
        dropped = _dropped(fresh_sshd)
        assert dropped == [], f"{len(dropped)} dropped in {connections}: {dropped[:3]}"
        assert errors == 0
        _same_connection(fresh_sshd, t, sessions)
        # ...and it still carries data.
        back = clients.echo_roundtrip("127.0.0.1", port, b"still here", 10)
        assert back == b"still here"
    print(f"\nhalf-close-then-reset, 6 clients x 5 s: {connections} connections")


@pytest.mark.slow
def test_a_minute_of_it_beside_a_256_mib_upload(
    process_manager: Manager, fresh_sshd: SshServer, targets
) -> None:
    line = fresh_sshd.line(
        *("-L", f"0:{targets.host}:{targets.echo}"),
        *("-L", f"0:{targets.host}:{targets.sink}"),
    )
    with process_manager.open(line) as t:
        echo, sink = (f.listen_port for f in t.forwards)
        assert echo is not None and sink is not None
        sessions = fresh_sshd.session_pids()
        uploaded: list[tuple[int, str]] = []

        def upload() -> None:
            time.sleep(5.0)  # into the storm, not beside its start
            uploaded.append(clients.sink_upload("127.0.0.1", sink, 256 * MiB, 90))

        uploader = threading.Thread(target=upload)
        uploader.start()
        started = time.monotonic()
        connections, errors = _storm(echo, 60.0)
        took = time.monotonic() - started
        uploader.join(60)
        assert not uploader.is_alive()
        assert uploaded == [(256 * MiB, expected_sha256(256 * MiB))]
        dropped = _dropped(fresh_sshd)
        assert dropped == [], f"{len(dropped)} dropped in {connections}: {dropped[:3]}"
        assert errors == 0
        _same_connection(fresh_sshd, t, sessions)
        stats = t.forwards[0].stats
    print(
        f"\nnbtunnel -L, 6 clients x {took:.0f} s of half-close-then-reset: "
        f"{connections} connections, 0 disconnects; "
        f"forward stats total={stats.connections_total} failed={stats.connections_failed}"
    )


@pytest.mark.slow
def test_ssh_under_the_same_load_for_reference(fresh_sshd: SshServer, targets) -> None:
    """OpenSSH's ``ssh -L`` with the same clients: the figure to compare."""
    with openssh_forward(fresh_sshd, [f"{targets.host}:{targets.echo}"]) as fwd:
        sessions = fresh_sshd.session_pids()
        started = time.monotonic()
        connections, errors = _storm(fwd.ports[0], 60.0)
        took = time.monotonic() - started
        dropped = _dropped(fresh_sshd)
        assert dropped == [] and errors == 0
        assert fwd.proc.poll() is None and fresh_sshd.session_pids() == sessions
    print(
        f"\nssh -L, 6 clients x {took:.0f} s of half-close-then-reset: "
        f"{connections} connections, 0 disconnects"
    )
