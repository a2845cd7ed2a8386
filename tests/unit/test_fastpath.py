"""The fast path's rules that need no server: when the transport thread may
write a channel's data itself, and when it must queue it for the relay."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from types import SimpleNamespace

import paramiko
import pytest
from nbtunnel._paramiko import fastpath, gcm, probe, splice
from paramiko.buffered_pipe import BufferedPipe, PipeTimeout

# Where this paramiko lacks what a piece needs, the gate never uses it
# (the floors job runs these against the oldest paramiko supported).
needs_splice = pytest.mark.skipif(
    not probe.supported("splice"), reason=str(probe.lacking("splice"))
)
needs_fastpath = pytest.mark.skipif(
    not probe.supported("fastpath"), reason=str(probe.lacking("fastpath"))
)


class FakeChannel:
    """What Pipe and Splice touch of a paramiko Channel."""

    def __init__(self) -> None:
        self.transport = SimpleNamespace(clear_to_send=threading.Event())
        self.transport.clear_to_send.set()
        self.credited: list[int] = []
        self.in_buffer = BufferedPipe()

    def _check_add_window(self, n: int) -> int:
        self.credited.append(n)
        return 0  # no window adjust due


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    b.settimeout(5)
    yield a, b
    a.close()
    b.close()


def _pipe(chan: FakeChannel, sock: socket.socket, counted: list[int]) -> splice.Pipe:
    # What Splice.__init__ does to a live channel's BufferedPipe.
    pipe = chan.in_buffer
    pipe.__class__ = splice.Pipe
    assert isinstance(pipe, splice.Pipe)
    pipe._chan = chan  # type: ignore[assignment]
    pipe._clear_to_send = chan.transport.clear_to_send
    pipe._sock = sock
    pipe._count = counted.append
    pipe._busy = True
    return pipe


@needs_splice
def test_the_relay_goes_first_then_data_skips_it(pair) -> None:
    ours, theirs = pair
    chan, counted = FakeChannel(), []
    pipe = _pipe(chan, ours, counted)
    pipe.feed(b"one")  # the relay has not read yet: it may hold older bytes
    assert pipe.direct == 0
    assert pipe.read(100) == b"one"  # the relay takes it (and writes it)
    pipe.feed(b"two")  # ...still writing: queued behind it
    assert pipe.read(100) == b"two"
    with pytest.raises(PipeTimeout):
        pipe.read(100, timeout=0.0)  # done writing, nothing queued
    pipe.feed(b"three")  # now straight to the socket
    assert theirs.recv(100) == b"three"
    assert pipe.direct == 5 and counted == [5] and chan.credited == [5]


@needs_splice
def test_queued_data_keeps_later_data_behind_it(pair) -> None:
    ours, _ = pair
    chan, counted = FakeChannel(), []
    pipe = _pipe(chan, ours, counted)
    pipe._busy = False
    chan.transport.clear_to_send.clear()  # a key exchange: "a" is queued
    pipe.feed(b"a")
    chan.transport.clear_to_send.set()
    pipe.feed(b"b")  # the relay is idle, but "a" is still queued
    assert pipe.direct == 0 and counted == []
    assert pipe.read(10) == b"ab"


@needs_splice
def test_a_full_socket_queues_the_rest(pair) -> None:
    ours, theirs = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    chan, counted = FakeChannel(), []
    pipe = _pipe(chan, ours, counted)
    pipe._busy = False
    big = bytes(range(256)) * 4096  # 1 MiB: more than the socket takes
    pipe.feed(big)
    assert 0 < pipe.direct < len(big)
    pipe.feed(b"tail")  # behind what was queued, never before it
    got = bytearray()
    reader = threading.Thread(target=lambda: got.extend(_drain(theirs, len(big) + 4)))
    reader.start()
    ours.sendall(pipe.read(2 * len(big)))  # the relay writes the rest
    reader.join(10)
    assert bytes(got) == big + b"tail"
    assert counted == [pipe.direct] == chan.credited


def _drain(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        data = sock.recv(65536)
        if not data:
            break
        out += data
    return bytes(out)


@needs_splice
def test_no_direct_write_during_a_key_exchange_or_after_detach(pair) -> None:
    ours, _ = pair
    chan = FakeChannel()
    pipe = _pipe(chan, ours, [])
    pipe._busy = False
    chan.transport.clear_to_send.clear()
    pipe.feed(b"kex")
    assert pipe.direct == 0 and pipe.read(10) == b"kex"
    chan.transport.clear_to_send.set()
    with pytest.raises(PipeTimeout):
        pipe.read(10, timeout=0.0)  # the relay wrote "kex" and is idle again
    pipe.detach()
    pipe.feed(b"late")
    assert pipe.direct == 0 and pipe.read(10) == b"late"


@needs_splice
def test_end_of_file_after_the_data(pair) -> None:
    ours, _ = pair
    chan = FakeChannel()
    pipe = _pipe(chan, ours, [])
    pipe.feed(b"last")
    pipe.close()
    assert pipe.read(10) == b"last"
    assert pipe.read(10) == b""


def test_the_iv_counter_wraps_as_64_bits() -> None:
    assert gcm._next_iv(b"\x01\x02\x03\x04" + b"\x00" * 7 + b"\x01") == (
        b"\x01\x02\x03\x04" + b"\x00" * 7 + b"\x02"
    )
    assert gcm._next_iv(b"abcd" + b"\xff" * 8) == b"abcd" + b"\x00" * 8


@needs_fastpath
def test_install_only_where_paramikos_fields_are() -> None:
    a, b = socket.socketpair()
    try:
        transport = paramiko.Transport(a)
        fastpath.install(transport)
        assert type(transport.packetizer) is fastpath.Packetizer
        other = paramiko.Transport(b)
        del other.packetizer._Packetizer__iv_in  # an older or newer paramiko
        fastpath.install(other)
        assert type(other.packetizer) is paramiko.Packetizer
    finally:
        a.close()
        b.close()


def test_no_splice_for_what_is_not_a_paramiko_channel(pair) -> None:
    assert splice.splice(pair[0], object()) is None
