"""The reading half of the fast path: AES-GCM packets from a large buffer.

:class:`Reading` reads the socket in large chunks, decrypts one packet at a
time from them and hands channel data straight to its channel; anything
else goes to paramiko as the Message it would have read.  It runs in
paramiko's transport thread only.
"""

from __future__ import annotations

import errno
import struct
import weakref

import paramiko
from cryptography.exceptions import InvalidTag
from paramiko.common import MSG_IGNORE
from paramiko.packet import NeedRekeyException

from ..platform import sockets
from .gcm import (
    _AEAD_IN,
    _BLOCK_ENGINE_IN,
    _CLOSED,
    _COMPRESS_ENGINE_IN,
    _IV_IN,
    _NEED_REKEY,
    _RECEIVED_BYTES,
    _RECEIVED_BYTES_OVERFLOW,
    _RECEIVED_PACKETS,
    _RECEIVED_PACKETS_OVERFLOW,
    _REMAINDER,
    _SEQUENCE_NUMBER_IN,
    _SOCKET,
    MSG_CHANNEL_DATA,
    TAG,
    Base,
    _next_iv,
)

# What read_message() returns for a packet it delivered itself.
_DELIVERED = paramiko.Message(b"")
# Room for several of the largest packets OpenSSH sends (256 KiB): one
# recv_into() usually brings many packets at once.
READ_CHUNK = 1024 * 1024
MAX_PACKET = 256 * 1024 + 1024


class Reading(Base):
    """The reading half of :class:`fastpath.Packetizer` (the transport thread only)."""

    _rbuf: bytearray | None = None
    _rstart = 0
    _rend = 0
    _handshake_done = False
    # The transport whose packets these are (a weak reference: it holds us).
    _owner: weakref.ref[paramiko.Transport] | None = None
    _in_ok: bool | None = None

    def _fast_in(self) -> bool:
        if self._in_ok is None:
            self._in_ok = self._usable(_AEAD_IN, _COMPRESS_ENGINE_IN)
        return self._in_ok

    def read_message(self) -> tuple[int, paramiko.Message]:
        if not self._fast_in():
            self._give_back()
            return super().read_message()
        d = self.__dict__
        buf = self._rbuf
        if buf is None:
            buf = self._rbuf = bytearray(READ_CHUNK)
            # Bytes paramiko read past the banner come first.
            rest = d[_REMAINDER]
            if rest:
                buf[: len(rest)] = rest
                self._rend = len(rest)
                d[_REMAINDER] = b""
        while True:
            have = self._rend - self._rstart
            if have >= 4:
                (size,) = struct.unpack_from(">I", buf, self._rstart)
                if size > MAX_PACKET:
                    raise paramiko.SSHException(f"Invalid packet size {size}")
                whole = 4 + size + TAG
                if have >= whole:
                    break
                if self._rstart + whole > len(buf):
                    self._compact()
            elif self._rstart + 4 > len(buf):
                self._compact()
            self._fill(at_boundary=have == 0)
        start = self._rstart
        self._rstart = start + whole
        view = memoryview(buf)
        try:
            plain = d[_BLOCK_ENGINE_IN].decrypt(
                d[_IV_IN], view[start + 4 : start + whole], view[start : start + 4]
            )
        except InvalidTag:
            raise paramiko.SSHException("Mismatched MAC") from None
        finally:
            view.release()
        d[_IV_IN] = _next_iv(d[_IV_IN])
        seqno = d[_SEQUENCE_NUMBER_IN]
        d[_SEQUENCE_NUMBER_IN] = (seqno + 1) & 0xFFFFFFFF
        self._count_in(size + TAG + 4)
        end = size - plain[0]  # the padding's length comes first
        if plain[1] == MSG_CHANNEL_DATA and self._deliver(plain, end):
            return MSG_IGNORE, _DELIVERED
        msg = paramiko.Message(plain[2:end])
        msg.seqno = seqno
        return plain[1], msg

    def _deliver(self, plain: bytes, end: int) -> bool:
        """Hand channel data to its channel here, as paramiko's run loop would.

        The loop then sees an ignored message: it checks for a rekey due and
        reads the next packet, without its dispatch (a BytesIO, three reads,
        a locked channel lookup, a copy) per packet.  Anything unusual (a
        key exchange under way, an unknown channel, a malformed length, a
        handler someone replaced) is left to paramiko.
        """
        t = self._owner() if self._owner is not None else None
        try:
            if (
                t is None
                or t._expected_packet  # type: ignore[attr-defined]
                or not t.initial_kex_done
                or t._channel_handler_table[MSG_CHANNEL_DATA]  # type: ignore[attr-defined]
                is not paramiko.Channel._feed  # type: ignore[attr-defined]
            ):
                return False
            chan = t._channels.get(int.from_bytes(plain[2:6], "big"))  # type: ignore[attr-defined]
        except (AttributeError, KeyError):
            self._owner = None  # another paramiko: its own dispatch from now on
            return False
        n = int.from_bytes(plain[6:10], "big")
        if chan is None or 10 + n > end:
            return False
        chan._feed(plain[10 : 10 + n])
        return True

    def _count_in(self, raw: int) -> None:
        # As paramiko's read_message: rekey after so many bytes or packets,
        # and give up on a peer that ignores the request for too long.
        d = self.__dict__
        d[_RECEIVED_BYTES] += raw
        d[_RECEIVED_PACKETS] += 1
        if d[_NEED_REKEY]:
            d[_RECEIVED_BYTES_OVERFLOW] += raw
            d[_RECEIVED_PACKETS_OVERFLOW] += 1
            if (
                d[_RECEIVED_PACKETS_OVERFLOW] >= self.REKEY_PACKETS_OVERFLOW_MAX
                or d[_RECEIVED_BYTES_OVERFLOW] >= self.REKEY_BYTES_OVERFLOW_MAX
            ):
                raise paramiko.SSHException(
                    "Remote transport is ignoring rekey requests"
                )
        elif (
            d[_RECEIVED_PACKETS] >= self.REKEY_PACKETS
            or d[_RECEIVED_BYTES] >= self.REKEY_BYTES
        ):
            d[_RECEIVED_BYTES_OVERFLOW] = 0
            d[_RECEIVED_PACKETS_OVERFLOW] = 0
            self._trigger_rekey()  # type: ignore[attr-defined]

    def _compact(self) -> None:
        buf = self._rbuf
        assert buf is not None
        have = self._rend - self._rstart
        buf[:have] = buf[self._rstart : self._rend]
        self._rstart, self._rend = 0, have

    def _fill(self, *, at_boundary: bool) -> None:
        """One recv_into() more, with paramiko's read_all() handling of its
        socket timeout: a closed packetizer, a rekey due, a keepalive due."""
        d = self.__dict__
        buf = self._rbuf
        assert buf is not None
        if self._rend == len(buf):
            self._compact()
        sock = d[_SOCKET]
        while True:
            try:
                # sshd does not set TCP_NODELAY, so a small reply of its
                # waits for the ACK of its previous small packet, which our
                # kernel delays by 40 ms: the first channel of a connection
                # took 45 ms to open.  Quick ACKs must be asked for again
                # before every read, the kernel drops them on its own.
                sockets.quickack(sock)  # Linux's; nothing elsewhere
                with memoryview(buf) as view:
                    n = sock.recv_into(view[self._rend :])
            except TimeoutError:
                n = -1
            except OSError as exc:
                if exc.errno != errno.EAGAIN and not d[_CLOSED]:
                    raise
                if d[_CLOSED]:
                    raise EOFError() from None
                n = -1
            if n == 0:
                raise EOFError()
            if n > 0:
                self._rend += n
                return
            if d[_CLOSED]:
                raise EOFError()
            if at_boundary and d[_NEED_REKEY]:
                raise NeedRekeyException()
            self._check_keepalive()  # type: ignore[attr-defined]

    def _give_back(self) -> None:
        # Leaving the fast path (another cipher after a rekey): what was read
        # ahead goes back to paramiko, which reads its remainder first.
        if self._rbuf is not None and self._rend > self._rstart:
            d = self.__dict__
            ahead = bytes(self._rbuf[self._rstart : self._rend])
            d[_REMAINDER] = ahead + d[_REMAINDER]
        self._rbuf = None
        self._rstart = self._rend = 0

    def complete_handshake(self) -> None:
        # paramiko calls this after every packet, and each call cancels a
        # threading.Timer (a lock and a notify): once is what it means.
        if not self._handshake_done:
            super().complete_handshake()
            self._handshake_done = True
