"""The byte relay between one accepted socket and one SSH channel."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from typing import Protocol

from .._paramiko import ordered, splice
from ..status import Counters

# 256 KiB reads: the cost of a Python forwarder is per read and per packet,
# not per byte.  As measured, 1 KiB reads cost 6-8x the CPU of 32 KiB ones,
# and 256 KiB reads with two blocking threads per connection was the best
# setup tried.
BUFSIZE = 256 * 1024


class Channel(Protocol):
    """What the relay needs of an SSH channel (paramiko's Channel has it)."""

    def recv(self, nbytes: int) -> bytes: ...
    def sendall(self, data: bytes) -> None: ...
    def shutdown_write(self) -> None: ...
    def close(self) -> None: ...


class _Sending(Protocol):
    """What goes into the channel: the channel's own methods, or ordered.py's."""

    def sendall(self, data: bytes) -> None: ...
    def shutdown_write(self) -> None: ...
    def close(self) -> None: ...


class Relay:
    """Copies both directions between ``sock`` and ``chan`` until both finish.

    Each direction runs in its own blocking thread (no select(): it caps at
    FD_SETSIZE and paramiko's channel fileno() costs a pipe per channel).
    An end-of-file in one direction is passed on as a half-close and the
    other keeps flowing; an error in either aborts both.  An exception of
    any other kind (a bug, a paramiko that changed under the gate) aborts
    both as well and is counted as a failed connection in the forward's
    stats: the other direction must never wait for a thread that is gone;
    so is a helper thread that cannot start (a process limit).

    The channel ends one way only, whichever thread ends it:
    :meth:`_send_eof` and :meth:`_close_channel` take the same lock, so a
    close never overtakes an EOF on its way out (OpenSSH drops the whole
    SSH connection when an EOF arrives for a channel it has freed), and
    what goes into the channel is sent in order with its close
    (``_paramiko/ordered.py``) where paramiko lets it be.
    """

    def __init__(
        self,
        sock: socket.socket,
        chan: Channel,
        counters: Counters,
        *,
        target_is_sock: bool = False,
        to_chan: bytes = b"",
        to_sock: bytes = b"",
    ) -> None:
        """``target_is_sock``: the socket is the target's end (a remote
        forward), so bytes into it count as sent to the target.  ``to_chan``
        and ``to_sock``: bytes already read (after a SOCKS request, say) that
        go out first."""
        self.sock = sock
        self.chan = chan
        self.counters = counters
        self.error: str | None = None
        # Bytes to and from the target for this connection, each written by
        # one direction's thread only.
        self.sent = 0
        self.received = 0
        self._target_is_sock = target_is_sock
        self._to_chan = to_chan
        self._to_sock = to_sock
        self._aborted = threading.Event()
        self._splice: splice.Splice | None = None
        # Where the bytes for the channel and its EOF go: the channel itself
        # until run() finds the ordered way (ordered.py) that applies.
        self._out: _Sending = chan
        # Held while the channel's EOF or close is on its way (see the class
        # docstring); _chan_closed under it.
        self._end = threading.Lock()
        self._chan_closed = False

    def _count_up(self, n: int) -> None:
        if self._target_is_sock:
            self.counters.add_from_target(n)
            self.received += n
        else:
            self.counters.add_to_target(n)
            self.sent += n

    def _count_down(self, n: int) -> None:
        if self._target_is_sock:
            self.counters.add_to_target(n)
            self.sent += n
        else:
            self.counters.add_from_target(n)
            self.received += n

    def run(self) -> None:
        """Relay until done, in the calling thread plus one helper thread."""
        # paramiko's per-packet path is the bottleneck of a Python
        # forwarder; the splice shortens it where it can (_paramiko/splice.py).
        self._splice = splice.splice(self.sock, self.chan, self._count_down)
        # Batches of packets are the splice's speed-up; the order is not.
        batch = self._splice is not None
        self._out = ordered.ordered(self.chan, batch=batch) or self.chan
        down = threading.Thread(
            target=self._down, name="nbtunnel-relay-down", daemon=True
        )
        try:
            down.start()
        except RuntimeError as exc:
            # "can't start new thread": a pids cgroup, TasksMax, ulimit -u.
            # This connection ends (reset, its channel closed), counted and
            # said; the forward serves the next one.
            why = (
                f"could not start a thread for this connection: {exc} "
                "(a process limit?)"
            )
            self.counters.failed(why)
            self.abort(why, reset=True)
            self._close()
            return
        try:
            self._up()
        finally:
            down.join()
            self._close()

    def abort(self, reason: str | None = None, *, reset: bool = False) -> None:
        """Stop both directions at once (from any thread).

        ``reset``: the data was cut short (the SSH connection died), so the
        client gets a reset instead of an end-of-file that would read as a
        complete transfer.  A write still blocked on a client that does not
        read then waits for it, or for a later abort() without ``reset``.
        """
        if reason and self.error is None:
            self.error = reason
        self._aborted.set()
        if self._splice is not None:
            self._splice.detach()
        # Closing the channel wakes a recv() on it; shutting the socket
        # down wakes a recv() on the socket.  Neither closes the fd, so a
        # thread still inside a call on it never sees a reused descriptor.
        self._close_channel()
        with contextlib.suppress(OSError):
            if reset:
                # The reading side only: no FIN goes out, and the close in
                # _close() sends the RST.
                with contextlib.suppress(OSError):
                    self.sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                self.sock.shutdown(socket.SHUT_RD)
            else:
                self.sock.shutdown(socket.SHUT_RDWR)

    def _up(self) -> None:
        """The socket -> the channel."""
        sock, count = self.sock, self._count_up
        send, size = self._out.sendall, BUFSIZE
        if self._splice is not None:
            size = self._splice.read_size(BUFSIZE)
        try:
            data, self._to_chan = self._to_chan, b""
            while True:
                if data:
                    send(data)
                    count(len(data))
                data = sock.recv(size)
                if not data:
                    self._send_eof()
                    return
        except (OSError, EOFError) as exc:
            if not self._aborted.is_set():
                self.abort(f"upstream ended with an error: {_why(exc)}", reset=True)
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            self._failed("upstream", exc)

    def _down(self) -> None:
        """The channel -> the socket."""
        sock, chan, count = self.sock, self.chan, self._count_down
        try:
            data, self._to_sock = self._to_sock, b""
            while True:
                if data:
                    sock.sendall(data)
                    count(len(data))
                data = chan.recv(BUFSIZE)
                if not data:
                    if self._aborted.is_set():
                        return
                    # A paramiko channel reads empty both at the server's
                    # end-of-file and when the SSH connection dies under
                    # it; only the first is the end of the data.
                    if not getattr(chan, "eof_received", True):
                        self.abort("the channel closed without end-of-file", reset=True)
                        return
                    sock.shutdown(socket.SHUT_WR)
                    return
        except (OSError, EOFError) as exc:
            if not self._aborted.is_set():
                self.abort(f"downstream ended with an error: {_why(exc)}", reset=True)
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            self._failed("downstream", exc)

    def _failed(self, direction: str, exc: Exception) -> None:
        why = f"{direction} failed unexpectedly: {type(exc).__name__}: {exc}"
        self.counters.failed(why)
        self.abort(why, reset=True)

    def _send_eof(self) -> None:
        """The client's end of data, into the channel: never after its close."""
        with self._end:
            if not (self._chan_closed or self._aborted.is_set()):
                self._out.shutdown_write()

    def _close_channel(self) -> None:
        """The channel's one close, from any thread (paramiko's close sends
        the EOF first if none went out).  An EOF on its way out goes first:
        this waits for the lock it is sent under."""
        with self._end:
            if self._chan_closed:
                return
            self._chan_closed = True
            with contextlib.suppress(OSError, EOFError):
                self._out.close()

    def _close(self) -> None:
        if self._splice is not None:
            self._splice.detach()  # before the descriptor can be reused
        self._close_channel()
        self.sock.close()


def _why(exc: BaseException) -> str:
    # paramiko raises a bare EOFError() on a connection that went away.
    return str(exc) or type(exc).__name__
