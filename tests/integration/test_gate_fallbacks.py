"""The gate's fallbacks against the rig's real sshd: the speed-ups switched
off, a cryptography without ``AESGCM.encrypt_into``, and a relay whose
channel fails in a way nobody expected (nbtunnel/_paramiko/probe.py,
nbtunnel/forward/relay.py)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import paramiko
import pytest
from nbtunnel._paramiko import fastpath, splice
from nbtunnel.forward.relay import Relay
from nbtunnel.ssh.connection import Connection
from nbtunnel.status import Counters
from paramiko.common import MSG_CHANNEL_DATA

from tests.integration.conftest import Connect
from tests.rig import clients
from tests.rig.data import chunks, expected_sha256

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


def _relayed(
    connection: Connection, host: str, port: int
) -> tuple[socket.socket, Relay, threading.Thread]:
    """One -L connection by hand: our end of a TCP pair, and its running relay."""
    chan = connection.open_tcpip(host, port, ("127.0.0.1", 0), 10)
    with socket.create_server(("127.0.0.1", 0)) as server:
        ours = socket.create_connection(server.getsockname())
        theirs, _ = server.accept()
    ours.settimeout(30)
    relay = Relay(theirs, chan, Counters())
    thread = threading.Thread(target=relay.run, daemon=True)
    thread.start()
    return ours, relay, thread


def _carries_both_ways(connection: Connection, targets) -> list[object]:
    """8 MiB up and 8 MiB down through relays; the channels' input buffers."""
    n = 8 * MiB
    up, first, thread = _relayed(connection, targets.host, targets.sink)
    for piece in chunks(n):
        up.sendall(piece)
    up.shutdown(socket.SHUT_WR)
    assert clients.recv_all(up, 60).decode().split() == [str(n), expected_sha256(n)]
    up.close()
    thread.join(30)
    down, second, thread = _relayed(connection, targets.host, targets.source)
    down.sendall(f"{n}\n".encode())
    got = clients.recv_all(down, 60)
    assert (len(got), hashlib.sha256(got).hexdigest()) == (n, expected_sha256(n))
    down.close()
    thread.join(30)
    return [r.chan.in_buffer for r in (first, second)]  # type: ignore[attr-defined]


def _plain(connection: Connection) -> paramiko.Transport:
    transport = connection._transport
    assert transport is not None
    # paramiko's own Packetizer, exactly: no batched GCM either way.
    assert type(transport.packetizer) is paramiko.packet.Packetizer
    return transport


def test_nbtunnel_fastpath_0_leaves_every_packet_to_paramiko(
    connect: Connect, targets, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBTUNNEL_FASTPATH", "0")
    connection = connect()
    _plain(connection)
    pipes = _carries_both_ways(connection, targets)
    assert not any(isinstance(p, splice.Pipe) for p in pipes)


def test_fastpath_no_does_it_for_one_connection(
    connect: Connect, targets, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NBTUNNEL_FASTPATH", raising=False)
    connection = connect("-o", "FastPath=no")
    _plain(connection)
    pipes = _carries_both_ways(connection, targets)
    assert not any(isinstance(p, splice.Pipe) for p in pipes)


class _Boom(Exception):
    """No kind of error the relay expects."""


def test_an_unexpected_exception_ends_the_connection_with_an_error(
    connect: Connect, targets
) -> None:
    """A send that raises what no relay expects (here: a patched packetizer)
    closes the client's connection at once and shows in the forward's stats;
    it used to leave the other direction waiting for ever."""
    connection = connect()
    transport = connection._transport
    assert transport is not None
    packetizer = transport.packetizer
    send = packetizer.send_message

    def send_message(m: paramiko.Message) -> None:
        if m.asbytes()[0] == MSG_CHANNEL_DATA:
            raise _Boom("the packetizer broke")
        send(m)

    def send_channel_data(chanid: int, data: list[memoryview]) -> None:
        raise _Boom("the packetizer broke")

    # Either path the relay may take: paramiko's (Channel.sendall) or the
    # batched one (fastpath.Packetizer.send_channel_data).
    packetizer.send_message = send_message  # type: ignore[method-assign]
    if isinstance(packetizer, fastpath.Packetizer):
        packetizer.send_channel_data = send_channel_data  # type: ignore[method-assign]

    ours, relay, thread = _relayed(connection, targets.host, targets.echo)
    started = time.monotonic()
    ours.sendall(b"hello")
    ours.settimeout(10)
    with pytest.raises(ConnectionResetError):
        while ours.recv(4096):
            pass
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - started < 5
    stats = relay.counters.snapshot()
    assert stats.connections_failed == 1
    assert stats.last_error == (
        "upstream failed unexpectedly: _Boom: the packetizer broke"
    )
    assert relay.error == stats.last_error
    ours.close()
    # The SSH connection itself carries on (the next channel is fine).
    packetizer.send_message = send  # type: ignore[method-assign]
    if isinstance(packetizer, fastpath.Packetizer):
        del packetizer.send_channel_data
    again, relay, thread = _relayed(connection, targets.host, targets.echo)
    again.sendall(b"again")
    again.shutdown(socket.SHUT_WR)
    assert clients.recv_all(again, 10) == b"again"
    again.close()
    thread.join(10)


# Run before anything imports cryptography's AESGCM for real: what
# cryptography < 47 is like for the fast path.
_NO_ENCRYPT_INTO = """
import os
from cryptography.hazmat.primitives.ciphers import aead
try:
    del aead.AESGCM.encrypt_into
except AttributeError:
    pass
mark = os.environ.get("NBTUNNEL_TEST_MARK")
if mark:
    with open(mark, "a") as file:
        file.write(f"{os.getpid()}\\n")
"""

_UPLOAD = """
import json, sys
from nbtunnel import Manager, TunnelError
from nbtunnel._paramiko import probe
from tests.rig import clients

manager = Manager(engine="process")
try:
    with manager.open(sys.argv[1]) as tunnel:
        port = tunnel.forwards[0].listen_port
        count, digest = clients.sink_upload("127.0.0.1", port, 64 << 20, 120)
        print(json.dumps({"count": count, "sha256": digest,
                          "why": probe.why_not("fastpath")}))
except TunnelError as exc:
    sys.exit(f"{exc}")
finally:
    manager.close()
"""


@pytest.mark.slow
def test_64_mib_upload_without_encrypt_into(sshd, targets, tmp_path: Path) -> None:
    """cryptography before 47 has no AESGCM.encrypt_into: the fast path is
    off (engine process included) and the upload goes through paramiko's."""
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent(_NO_ENCRYPT_INTO))
    mark = tmp_path / "mark"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "NBTUNNEL_TEST_MARK": str(mark),
    }
    env.pop("NBTUNNEL_FASTPATH", None)
    line = sshd.line("-L", f"0:{targets.host}:{targets.sink}")
    ran = subprocess.run(
        [sys.executable, "-c", _UPLOAD, line],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=150,
        stdin=subprocess.DEVNULL,
    )
    assert ran.returncode == 0, ran.stderr
    assert "Traceback" not in ran.stderr, ran.stderr
    reply = json.loads(ran.stdout)
    assert (reply["count"], reply["sha256"]) == (64 * MiB, expected_sha256(64 * MiB))
    assert "AESGCM.encrypt_into" in reply["why"]
    assert "cryptography" in reply["why"]
    # The caller and its engine both ran without it.
    assert len(set(mark.read_text().split())) == 2


def _renamed(site: Path, pattern_: str, replacement: str) -> Path:
    """A copy of the installed paramiko under ``site`` with ``pattern_``
    renamed throughout its source, as a release that renamed it would be."""
    copy = site / "paramiko"
    shutil.copytree(
        Path(paramiko.__file__).parent,
        copy,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    renamed = 0
    for path in copy.glob("*.py"):
        text, n = re.subn(pattern_, replacement, path.read_text())
        path.write_text(text)
        renamed += n
    assert renamed, pattern_
    return site


_UNIX = """
import json, sys
from nbtunnel import Manager, TunnelError
from tests.rig import clients

manager = Manager(engine="process")
out = {}
try:
    with manager.open(sys.argv[1]) as tunnel:
        tcp, unix = tunnel.forwards
        port = tcp.listen_port
        out["tcp"] = clients.echo_roundtrip("127.0.0.1", port, b"tcp", 10) == b"tcp"
        try:
            got = clients.echo_roundtrip("127.0.0.1", unix.listen_port, b"x", 10)
        except OSError:
            got = b""
        out["unix"] = got.decode()
        clients.wait_until(lambda: unix.stats.connections_failed > 0, 5)
        out["error"] = unix.stats.last_error
    try:
        manager.open(sys.argv[2]).close()
        out["remote"] = "opened"
    except TunnelError as exc:
        out["remote"] = str(exc)
finally:
    manager.close()
print(json.dumps(out))
"""


def test_unix_socket_forwards_are_refused_in_one_line_where_paramiko_cannot(
    sshd, targets, here, tmp_path: Path
) -> None:
    """Without paramiko's Transport._next_channel no unix-socket forward can
    work: each is refused saying so, and TCP forwards carry on."""
    site = _renamed(tmp_path / "site", r"\b_next_channel\b", "_next_channel_renamed")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    local = sshd.line(
        *("-L", f"0:{targets.host}:{targets.echo}"),
        *("-L", f"0:{targets.unix_echo}"),
    )
    remote = sshd.line("-R", f"{tmp_path / 'remote.sock'}:127.0.0.1:{here.echo}")
    ran = subprocess.run(
        [sys.executable, "-c", _UNIX, local, remote],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert ran.returncode == 0, ran.stderr
    assert "Traceback" not in ran.stderr, ran.stderr
    out = json.loads(ran.stdout)
    why = (
        "forwarding unix sockets needs Transport._next_channel, which paramiko "
        f"{paramiko.__version__} does not have; use a TCP port instead"
    )
    assert out == {"tcp": True, "unix": "", "error": why, "remote": out["remote"]}
    assert out["remote"].endswith(why) and "\n" not in out["remote"]
