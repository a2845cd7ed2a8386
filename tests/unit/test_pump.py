"""The relay between a socket and a channel, with real sockets on both ends.

A socket stands in for the SSH channel here: the relay needs only recv,
sendall, shutdown_write and close, and a socket has real half-close.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading

from nbtunnel.forward.relay import Relay
from nbtunnel.status import Counters

from tests.rig import clients


class SocketChannel:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv(self, n: int) -> bytes:
        return self.sock.recv(n)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        # A paramiko channel's close() wakes a recv() blocked on it; a
        # socket's close() does not, its shutdown() does.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def _echo(sock: socket.socket) -> None:
    with sock:
        while data := sock.recv(65536):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)


def test_relay_echoes_every_byte_and_passes_half_close_on() -> None:
    client, local = socket.socketpair()
    chan_end, target = socket.socketpair()
    counters = Counters()
    relay = Relay(local, SocketChannel(chan_end), counters)
    threads = [
        threading.Thread(target=relay.run),
        threading.Thread(target=_echo, args=(target,)),
    ]
    for t in threads:
        t.start()
    payload = os.urandom(3 * 1024 * 1024 + 17)
    received = bytearray()

    def reader() -> None:
        while data := client.recv(65536):
            received.extend(data)

    r = threading.Thread(target=reader)
    r.start()
    client.sendall(payload)
    client.shutdown(socket.SHUT_WR)
    r.join(30)
    for t in threads:
        t.join(30)
    client.close()
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
    stats = counters.snapshot()
    assert stats.bytes_to_target == len(payload)
    assert stats.bytes_from_target == len(payload)
    assert relay.sent == relay.received == len(payload)
    assert relay.error is None


def test_abort_wakes_both_directions() -> None:
    client, local = socket.socketpair()
    chan_end, target = socket.socketpair()
    relay = Relay(local, SocketChannel(chan_end), Counters())
    t = threading.Thread(target=relay.run)
    t.start()
    relay.abort("stopping")
    t.join(5)
    assert not t.is_alive()
    assert relay.error == "stopping"
    client.close()
    target.close()


def test_reset_from_the_client_ends_the_relay() -> None:
    client, local = socket.socketpair()
    chan_end, target = socket.socketpair()
    relay = Relay(local, SocketChannel(chan_end), Counters())
    t = threading.Thread(target=relay.run)
    t.start()
    client.close()
    # The target sees end-of-file, then the relay finishes once it closes.
    assert target.recv(10) == b""
    target.close()
    t.join(5)
    assert not t.is_alive()


def test_pending_bytes_go_first_and_a_socket_target_counts_the_other_way() -> None:
    # A remote forward: the channel is the client's end, the socket the target's.
    client_end, chan_end = socket.socketpair()
    local, target = socket.socketpair()
    counters = Counters()
    relay = Relay(
        local,
        SocketChannel(chan_end),
        counters,
        target_is_sock=True,
        to_sock=b"after-the-handshake:",
        to_chan=b"early-reply:",
    )
    runner = threading.Thread(target=relay.run)
    runner.start()
    with client_end, target:
        client_end.sendall(b"request")
        client_end.shutdown(socket.SHUT_WR)
        got = clients.recv_all(target, 10)
        assert got == b"after-the-handshake:request"
        target.sendall(b"response")
        target.shutdown(socket.SHUT_WR)
        back = clients.recv_all(client_end, 10)
        assert back == b"early-reply:response"
    runner.join(10)
    assert not runner.is_alive()
    stats = counters.snapshot()
    assert stats.bytes_to_target == len(got) == relay.sent
    assert stats.bytes_from_target == len(back) == relay.received
