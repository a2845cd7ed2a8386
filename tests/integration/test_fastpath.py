"""The relay's shorter path through paramiko (nbtunnel/_paramiko/fastpath.py and
splice.py) and the key-exchange fix (_paramiko/rekey.py), against the rig's
real OpenSSH sshd.

The tests drive a Connection and a Relay directly, so that they can tell
which path carried the bytes: with AES-GCM the batched one in both
directions, with anything else paramiko's own, and the same bytes either way.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import socket
import threading

import pytest
from nbtunnel._paramiko import fastpath, probe, splice
from nbtunnel.forward.relay import Relay
from nbtunnel.ssh.connection import Connection
from nbtunnel.status import Counters
from paramiko.common import MSG_NEWKEYS

from tests.integration.conftest import Connect
from tests.rig import clients
from tests.rig.data import chunks, expected_sha256, pattern

pytestmark = pytest.mark.integration

MiB = 1024 * 1024

# Off where this paramiko or cryptography lacks what they need (the floors
# job), or switched off (NBTUNNEL_FASTPATH=0): the plain path is tested then.
needs_fastpath = pytest.mark.skipif(
    not probe.available("fastpath"), reason=str(probe.why_not("fastpath"))
)
needs_splice = pytest.mark.skipif(
    not probe.available("splice"), reason=str(probe.why_not("splice"))
)
needs_rekey_fix = pytest.mark.skipif(
    not probe.available("rekey"), reason=str(probe.why_not("rekey"))
)


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        ours = socket.create_connection(server.getsockname())
        theirs, _ = server.accept()
    return ours, theirs


class Local:
    """One -L connection by hand: a TCP pair, a channel, a relay between them."""

    def __init__(self, connection: Connection, host: str, port: int) -> None:
        self.chan = connection.open_tcpip(host, port, ("127.0.0.1", 0), 10)
        self.sock, theirs = _tcp_pair()
        self.sock.settimeout(60)
        self.counters = Counters()
        self.relay = Relay(theirs, self.chan, self.counters)
        self.thread = threading.Thread(target=self.relay.run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.sock.close()
        self.thread.join(30)
        assert not self.thread.is_alive()


def _upload(connection: Connection, targets, n: int) -> Local:
    local = Local(connection, targets.host, targets.sink)
    for piece in chunks(n):
        local.sock.sendall(piece)
    local.sock.shutdown(socket.SHUT_WR)
    reply = clients.recv_all(local.sock, 60).decode().split()
    assert reply == [str(n), expected_sha256(n)]
    local.close()
    return local


def _download(connection: Connection, targets, n: int) -> Local:
    local = Local(connection, targets.host, targets.source)
    local.sock.sendall(f"{n}\n".encode())
    h = hashlib.sha256()
    count = 0
    while data := local.sock.recv(256 * 1024):
        h.update(data)
        count += len(data)
    assert (count, h.hexdigest()) == (n, expected_sha256(n))
    local.close()
    return local


def _packetizer(connection: Connection) -> fastpath.Packetizer:
    packetizer = connection._transport.packetizer  # type: ignore[union-attr]
    assert isinstance(packetizer, fastpath.Packetizer)
    return packetizer


@needs_fastpath
@needs_splice
def test_gcm_takes_the_fast_path_both_ways(connect: Connect, targets) -> None:
    connection = connect()
    packetizer = _packetizer(connection)
    assert packetizer._fast_in() and packetizer._fast_out()

    up = _upload(connection, targets, 24 * MiB)
    # ~32 KiB per packet (sshd's maximum), sealed in batches.
    assert packetizer.sealed >= 24 * MiB // 32768
    assert up.counters.snapshot().bytes_to_target == 24 * MiB

    down = _download(connection, targets, 24 * MiB)
    pipe = down.chan.in_buffer
    assert isinstance(pipe, splice.Pipe)
    # The transport thread wrote most of it itself; the relay the rest.
    assert pipe.direct > 0
    assert down.counters.snapshot().bytes_from_target == 24 * MiB


@needs_fastpath
@needs_splice
def test_remote_forward_echoes_through_the_fast_path(
    connect: Connect, sshd, here
) -> None:
    connection = connect()
    pipes: list[object] = []

    def handler(chan, origin) -> None:
        sock = socket.create_connection((here.host, here.echo))
        relay = Relay(sock, chan, Counters(), target_is_sock=True)
        pipes.append(chan.in_buffer)
        relay.run()

    listener = connection.listen_remote("127.0.0.1", 0, handler)
    reply = clients.on_server(sshd, "echo", "127.0.0.1", listener.port, 16 * MiB)
    assert reply == {"ok": True}
    assert isinstance(pipes[0], splice.Pipe)
    assert _packetizer(connection).sealed > 0


@needs_fastpath
@pytest.mark.parametrize(
    "options",
    [("-c", "aes128-ctr"), ("-c", "aes256-ctr", "-C"), ("-C",)],
    ids=["aes128-ctr", "aes256-ctr-compressed", "gcm-compressed"],
)
def test_other_settings_keep_paramikos_packets(
    connect: Connect, targets, options: tuple[str, ...]
) -> None:
    """Without GCM, or with compression (which starts after the login, in the
    middle of the fast reader's stream), paramiko reads and writes every packet."""
    connection = connect(*options)
    packetizer = _packetizer(connection)
    assert not (packetizer._fast_in() or packetizer._fast_out())
    _upload(connection, targets, 8 * MiB)
    _download(connection, targets, 8 * MiB)
    assert packetizer.sealed == 0


def test_the_socks_leftover_goes_before_anything_the_fast_path_writes(
    connect: Connect, targets
) -> None:
    """Bytes the relay holds already (read with a SOCKS request) reach the
    client before the first byte the transport thread writes directly."""
    connection = connect()
    chan = connection.open_tcpip(targets.host, targets.echo, ("127.0.0.1", 0), 10)
    ours, theirs = _tcp_pair()
    ours.settimeout(30)
    chan.sendall(b"after")  # echoed back while the relay has not started
    relay = Relay(theirs, chan, Counters(), to_sock=b"before-")
    thread = threading.Thread(target=relay.run, daemon=True)
    thread.start()
    got = b""
    while len(got) < len(b"before-after"):
        got += ours.recv(64)
    assert got == b"before-after"
    ours.close()
    thread.join(10)


@needs_rekey_fix
def test_rekeying_every_megabyte_with_channels_closing(
    connect: Connect, targets
) -> None:
    """Re-keys while data flows both ways and channels close in between:
    paramiko's transport thread used to wait on its own key exchange when a
    CHANNEL_CLOSE arrived during one (30 s, then the connection died)."""
    connection = connect()
    transport = connection._transport
    assert transport is not None
    transport.clear_to_send_timeout = 10  # fail quickly, should it come back
    # The fast path's or paramiko's own: the fix is the same for both.
    packetizer = transport.packetizer
    packetizer.REKEY_BYTES = MiB
    rekeys = 0
    table = transport._handler_table  # type: ignore[attr-defined]
    newkeys = table[MSG_NEWKEYS]

    def counting(m) -> None:
        nonlocal rekeys
        rekeys += 1
        newkeys(m)

    table[MSG_NEWKEYS] = counting

    def echo(i: int) -> bool:
        data = pattern(MiB + i * 4096)
        local = Local(connection, targets.host, targets.echo)
        sender = threading.Thread(
            target=lambda: (
                local.sock.sendall(data),
                local.sock.shutdown(socket.SHUT_WR),
            )
        )
        sender.start()
        back = clients.recv_all(local.sock, 60)
        sender.join()
        local.close()
        return back == data

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert all(pool.map(echo, range(48)))
    assert rekeys >= 20
    assert transport.is_active()
    _download(connection, targets, 4 * MiB)
