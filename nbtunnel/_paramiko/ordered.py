"""A channel's data and EOF on the wire before its CLOSE, never after.

OpenSSH frees a channel once it has both sent and received CLOSE, and any
DATA or EOF that arrives for it afterwards ends the whole SSH connection
("ieof packet referred to nonexistent channel"): every connection of every
forward on it is reset.  Worse, sshd reuses the lowest free channel
number, so the stray message may land on a newer connection instead.

paramiko decides each message under the channel's lock and sends it after
releasing that lock (``Channel.shutdown``, ``Channel._send``: sending while
holding it would deadlock a re-key).  A close from another thread, or the
transport thread answering the server's CLOSE, can decide and send its
CLOSE in between: a client that half-closes and then resets made exactly
that happen 107 times in 60 s.

:class:`Ordered` decides each EOF and checks each batch of DATA (is the
channel still open?) while holding the transport's ``clear_to_send_lock``,
and sends it before letting go; every other message paramiko sends, a
CLOSE included, is sent holding that same lock too
(``_send_user_message``), and a close marks the channel closed *before* it
sends.  So whatever of ours found the channel open is on the wire before
its CLOSE, and whatever looks after the close sends nothing.  Nothing here
holds the channel's lock while sending.
"""

from __future__ import annotations

import time

import paramiko
from paramiko.common import cMSG_CHANNEL_DATA

from . import probe
from .fastpath import Packetizer

# Channel-data packets decided and sent at once: a relay's read of 256 KiB
# in sshd's 32 KiB packets, with room to spare.
BATCH = 16


class Ordered:
    """A paramiko channel's sending side, in order with its close.

    ``sendall`` and ``shutdown_write`` are the channel's own, made safe
    against a close from any thread; ``close`` is the channel's close.
    ``batch``: seal up to :data:`BATCH` packets into one send() where the
    transport has the fast packetizer (a speed-up; paramiko's packets
    otherwise).
    """

    def __init__(self, chan: paramiko.Channel, *, batch: bool = True) -> None:
        transport = chan.transport
        assert transport is not None
        self._chan = chan
        self._transport = transport
        packetizer = transport.packetizer
        self._fast = (
            packetizer if batch and isinstance(packetizer, Packetizer) else None
        )

    def sendall(self, data: bytes) -> None:
        """All of ``data`` into the channel, as ``Channel.sendall()``."""
        chan = self._chan
        view = memoryview(data)
        while view:
            chunks: list[memoryview] = []
            with chan.lock:
                if chan.closed:
                    raise OSError("Socket is closed")
                # The first waits for window; the rest take what is left.
                while view and len(chunks) < BATCH:
                    if chunks and chan.out_window_size == 0:
                        break
                    size = chan._wait_for_send_window(len(view))  # type: ignore[attr-defined]
                    if size == 0:
                        break
                    chunks.append(view[:size])
                    view = view[size:]
            if not chunks:
                raise OSError("the channel is closed")
            self._send_data(chunks)

    def shutdown_write(self) -> None:
        """EOF, unless the channel is closed (its close sent the EOF then)."""
        if not self._hold():
            return  # the connection is gone: nothing can follow anything
        try:
            chan = self._chan
            with chan.lock:
                m = None if chan.closed else chan._send_eof()  # type: ignore[attr-defined]
            if m is not None:
                self._transport.packetizer.send_message(m)
        finally:
            self._transport.clear_to_send_lock.release()

    def close(self) -> None:
        """paramiko's own: closed under the channel's lock, EOF (if not
        sent) and CLOSE sent after, each under the send lock."""
        self._chan.close()

    def _send_data(self, chunks: list[memoryview]) -> None:
        if not self._hold():
            raise EOFError("the SSH connection is closed")
        try:
            if self._chan.closed:
                # Closed after the window was taken: the CLOSE is out, or
                # waits for this lock; data now would follow it.
                raise OSError("the channel is closed")
            chanid = self._chan.remote_chanid
            if self._fast is not None:
                self._fast.send_channel_data(chanid, chunks)
                return
            for chunk in chunks:
                m = paramiko.Message()
                m.add_byte(cMSG_CHANNEL_DATA)
                m.add_int(chanid)
                m.add_string(bytes(chunk))
                self._transport.packetizer.send_message(m)
        finally:
            self._transport.clear_to_send_lock.release()

    def _hold(self) -> bool:
        """Take ``clear_to_send_lock`` outside a key exchange, as
        ``Transport._send_user_message`` does (then the caller releases it);
        False, not holding it, once the connection is closed.  Raises
        SSHException, as paramiko does, when a key exchange outlasts
        ``clear_to_send_timeout``: a close waiting behind this must not
        wait for ever."""
        t = self._transport
        give_up = time.monotonic() + getattr(t, "clear_to_send_timeout", 30.0)
        while True:
            if not t.clear_to_send.is_set():
                t.clear_to_send.wait(min(1.0, max(give_up - time.monotonic(), 0)))
            if not t.is_active():
                return False
            if not t.clear_to_send.is_set() and time.monotonic() >= give_up:
                raise paramiko.SSHException(
                    "Key-exchange timed out waiting for key negotiation"
                )
            t.clear_to_send_lock.acquire()
            if t.clear_to_send.is_set():
                return True
            t.clear_to_send_lock.release()


def ordered(chan: object, *, batch: bool = True) -> Ordered | None:
    """The ordered sending side of ``chan``; None where it does not apply (no
    paramiko channel on a transport, or this paramiko lacks what it needs):
    then the channel's own methods are all there is."""
    if not isinstance(chan, paramiko.Channel) or chan.transport is None:
        return None
    if not probe.available("ordered"):
        return None
    return Ordered(chan, batch=batch)
