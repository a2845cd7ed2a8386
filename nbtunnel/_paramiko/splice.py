"""The relay's side of the fast path: a socket and a channel, spliced.

With paramiko alone, each 32 KiB that arrives for a forwarded connection
is queued by the transport thread and handed to the relay's thread, which
wakes up, takes it and writes it to the socket; each read from the socket
goes out as a series of packets one Channel.send() at a time.  Here:

- :class:`Pipe` (the channel's input buffer): the transport thread writes
  arriving data to the socket itself when nothing is queued ahead of it and
  the relay is not busy writing what it took before (without blocking: a
  slow client gets the rest queued, as paramiko would), and credits the
  window at once;
- a read goes out in one batch of packets (fastpath.py), holding
  paramiko's locks once per batch: ordered.py sends them, in order with
  the channel's close.

paramiko's Channel stays the channel: recv(), close and window
bookkeeping are its own.  BufferedPipe's and Channel's private fields are
used as their own methods use them; :func:`splice` returns None where
``probe`` found them missing (another paramiko), where the speed-ups are
switched off, or for something that is no paramiko channel.
"""

from __future__ import annotations

import array
import socket
import threading
import time
from collections.abc import Callable

import paramiko
from paramiko.buffered_pipe import BufferedPipe, PipeTimeout
from paramiko.common import cMSG_CHANNEL_WINDOW_ADJUST

from ..platform import sockets
from . import probe

_PIPE_FIELDS = ("_lock", "_cv", "_event", "_buffer", "_closed")


class Pipe(BufferedPipe):  # type: ignore[type-arg]
    """A channel's input buffer that the transport thread may bypass.

    When nothing is queued and the relay is not busy writing what it took
    before, arriving data goes straight to the local socket (without
    blocking, so the transport thread never waits on a slow client) and the
    window is credited at once; otherwise it is queued as paramiko does and
    the relay writes it.  Swapped in for the BufferedPipe of a live channel
    (:meth:`Splice.__init__`), so no __init__ either.
    """

    # BufferedPipe's own, which its stubs leave out
    _lock: threading.Lock
    _cv: threading.Condition
    _event: threading.Event | None
    _buffer: array.array[int]
    _closed: bool

    _sock: socket.socket | None = None
    _chan: paramiko.Channel | None = None
    _clear_to_send: threading.Event
    _count: Callable[[int], None] | None = None
    # Bytes written to the socket by feed() itself, to tell which path ran.
    direct = 0
    # Between a read() that handed data to the relay and its next read():
    # the relay still writes that data, and nothing may overtake it.
    _busy = True

    def feed(self, data: bytes) -> None:
        sent = 0
        with self._lock:
            if self._event is not None:
                self._event.set()
            sock, chan = self._sock, self._chan
            if (
                sock is not None
                and not self._busy
                and not self._buffer
                and self._event is None
                # During a key exchange no window adjust can go out from
                # this (the transport) thread: queue, and let the relay
                # send it once the exchange is over.
                and self._clear_to_send.is_set()
            ):
                try:
                    # splice() makes no Splice where there is no DONTWAIT.
                    sent = sock.send(data, sockets.DONTWAIT or 0)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    self._sock = None  # the relay will meet the error itself
                self.direct += sent
                if sent and self._count is not None:
                    # Under the lock: the relay counts what it writes while
                    # _busy, so the two never count at once.
                    self._count(sent)
            if sent < len(data):
                self._buffer.frombytes(data[sent:] if sent else data)
                self._cv.notify_all()
        if sent:
            assert chan is not None
            _credit(chan, sent)

    def read(self, nbytes: int, timeout: float | None = None) -> bytes:
        # BufferedPipe.read, marking the relay busy with what it takes.
        with self._lock:
            self._busy = False
            if not self._buffer:
                if self._closed:
                    return b""
                if timeout == 0.0:
                    raise PipeTimeout()
                deadline = None if timeout is None else time.monotonic() + timeout
                while not self._buffer and not self._closed:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise PipeTimeout()
                    self._cv.wait(left)
                if not self._buffer:
                    return b""
            out = self._buffer[:nbytes].tobytes()
            del self._buffer[:nbytes]
            if self._event is not None and not self._buffer and not self._closed:
                self._event.clear()
            self._busy = True
            return out

    def detach(self) -> None:
        """No more direct writes: the socket is about to close."""
        with self._lock:
            self._sock = None


def _credit(chan: paramiko.Channel, n: int) -> None:
    """What Channel.recv() does after a read: maybe a window adjust."""
    ack = chan._check_add_window(n)  # type: ignore[attr-defined]
    if ack > 0:
        m = paramiko.Message()
        m.add_byte(cMSG_CHANNEL_WINDOW_ADJUST)
        m.add_int(chan.remote_chanid)
        m.add_int(ack)
        chan.transport._send_user_message(m)  # type: ignore[union-attr]


class Splice:
    """The fast path between one socket and one channel, for a relay.

    Arriving channel data may skip the relay's ``chan.recv()`` (see
    :class:`Pipe`), which stays the way it reads the rest, and ``count(n)``
    is told of the bytes written to the socket on its behalf.  What the
    relay sends goes through ``ordered.Ordered`` (batched where the splice
    is on).  ``detach()`` before closing the socket.
    """

    def __init__(
        self,
        sock: socket.socket,
        chan: paramiko.Channel,
        count: Callable[[int], None] | None = None,
    ) -> None:
        self._chan = chan
        transport = chan.transport
        assert transport is not None
        # paramiko adjusts the window after a tenth of it is read, ssh after
        # half: a window adjust is a packet through paramiko's slow path.
        chan.in_window_threshold = max(
            chan.in_window_threshold,
            chan.in_window_size // 2,
        )
        pipe = chan.in_buffer
        self._pipe: Pipe | None = None
        if type(pipe) is BufferedPipe and all(hasattr(pipe, f) for f in _PIPE_FIELDS):
            # The relay's first read() clears _busy; until then, data the
            # relay holds already (after a SOCKS request) goes first.
            with pipe._lock:  # type: ignore[attr-defined]
                pipe.__class__ = Pipe
                assert isinstance(pipe, Pipe)
                pipe._chan = chan
                pipe._clear_to_send = transport.clear_to_send
                pipe._sock = sock
                pipe._count = count
                pipe._busy = True
            self._pipe = pipe

    def read_size(self, limit: int) -> int:
        """The most to read from the socket, up to ``limit``, that fills whole
        packets: 256 KiB would go out as eight full packets and a 2 KiB one."""
        chunk = self._chan.out_max_packet_size - 64  # as Channel.send() cuts
        return max(chunk, limit - limit % chunk) if chunk > 0 else limit

    def detach(self) -> None:
        if self._pipe is not None:
            self._pipe.detach()


def splice(
    sock: socket.socket, chan: object, count: Callable[[int], None] | None = None
) -> Splice | None:
    """The fast path for a relay between ``sock`` and ``chan``, if it applies
    (a paramiko channel on a live transport); None means use the channel as is."""
    if not isinstance(chan, paramiko.Channel) or chan.transport is None:
        return None
    # This paramiko lacks what it needs, NBTUNNEL_FASTPATH=0, or this
    # connection's -o FastPath=no (Transport.speedups).
    if not probe.available("splice") or not getattr(chan.transport, "speedups", True):
        return None
    if sockets.DONTWAIT is None:
        # Windows: feed() could not write without blocking the transport.
        return None
    try:
        return Splice(sock, chan, count)
    except Exception:  # noqa: BLE001 - a speed-up: the plain relay still works
        return None
