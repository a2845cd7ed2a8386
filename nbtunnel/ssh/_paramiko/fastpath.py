"""SSH packets the short way, with paramiko's own code as the fallback.

paramiko's cost is per packet, not per byte (perf-baseline.md, "Where
paramiko's time goes"): for every 32 KiB that arrives two recv() calls, a
Message read through a BytesIO, a locked channel lookup and a threading
Timer cancelled; for every 32 KiB sent a Message, two locks, an Event poll
and a send().  :class:`Packetizer`, swapped in by :func:`install`, keeps
paramiko's wire format and bookkeeping (sequence numbers, GCM counters,
rekey limits) and, with AES-GCM over TCP:

- reads the socket in large chunks and decrypts one packet at a time from
  them, handing channel data straight to its channel;
- seals a batch of channel-data packets into one buffer and one send()
  (splice.py sends through it);
- asks for quick ACKs (see :meth:`Packetizer._fill`).

Any other cipher, compression, a hexdump or a socket that is no TCP
socket (a jump host's channel, a ProxyCommand) leaves every packet to
paramiko.  It reads and writes paramiko's private, name-mangled state, as
paramiko's own methods do; :func:`install` checks that it is there.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time
import weakref
from typing import Any

import paramiko
from cryptography.exceptions import InvalidTag
from paramiko.common import MSG_IGNORE
from paramiko.packet import NeedRekeyException
from paramiko.packet import Packetizer as _Packetizer

MSG_CHANNEL_DATA = 94
# What read_message() returns for a packet it delivered itself.
_DELIVERED = paramiko.Message(b"")
TAG = 16  # the GCM tag, where other ciphers have their MAC
# Room for several of the largest packets OpenSSH sends (256 KiB): one
# recv_into() usually brings many packets at once.
READ_CHUNK = 1024 * 1024
MAX_PACKET = 256 * 1024 + 1024
# Padding is 4 to 19 bytes (RFC 4253 section 6 with a 16-byte block).
MAX_PADDING = 19
# Up to this, one chunk is sealed by concatenation: fewer steps than the
# batch's buffers, where its copies no longer matter.
SMALL = 4096

# Linux only, as nbtunnel; 12 is its value there.
_QUICKACK = getattr(socket, "TCP_QUICKACK", 12)
_P = "_Packetizer__"  # paramiko's Packetizer keeps its state name-mangled
_AEAD_IN = _P + "aead_in"
_AEAD_OUT = _P + "aead_out"
_BLOCK_ENGINE_IN = _P + "block_engine_in"
_BLOCK_ENGINE_OUT = _P + "block_engine_out"
_CLOSED = _P + "closed"
_COMPRESS_ENGINE_IN = _P + "compress_engine_in"
_COMPRESS_ENGINE_OUT = _P + "compress_engine_out"
_DUMP_PACKETS = _P + "dump_packets"
_IV_IN = _P + "iv_in"
_IV_OUT = _P + "iv_out"
_KEEPALIVE_LAST = _P + "keepalive_last"
_NEED_REKEY = _P + "need_rekey"
_RECEIVED_BYTES = _P + "received_bytes"
_RECEIVED_BYTES_OVERFLOW = _P + "received_bytes_overflow"
_RECEIVED_PACKETS = _P + "received_packets"
_RECEIVED_PACKETS_OVERFLOW = _P + "received_packets_overflow"
_REMAINDER = _P + "remainder"
_SENT_BYTES = _P + "sent_bytes"
_SENT_PACKETS = _P + "sent_packets"
_SEQUENCE_NUMBER_IN = _P + "sequence_number_in"
_SEQUENCE_NUMBER_OUT = _P + "sequence_number_out"
_SOCKET = _P + "socket"
_WRITE_LOCK = _P + "write_lock"
_STATE = (
    _AEAD_IN,
    _AEAD_OUT,
    _BLOCK_ENGINE_IN,
    _BLOCK_ENGINE_OUT,
    _CLOSED,
    _COMPRESS_ENGINE_IN,
    _COMPRESS_ENGINE_OUT,
    _DUMP_PACKETS,
    _IV_IN,
    _IV_OUT,
    _KEEPALIVE_LAST,
    _NEED_REKEY,
    _RECEIVED_BYTES,
    _RECEIVED_BYTES_OVERFLOW,
    _RECEIVED_PACKETS,
    _RECEIVED_PACKETS_OVERFLOW,
    _REMAINDER,
    _SENT_BYTES,
    _SENT_PACKETS,
    _SEQUENCE_NUMBER_IN,
    _SEQUENCE_NUMBER_OUT,
    _SOCKET,
    _WRITE_LOCK,
)


def usable(packetizer: Any) -> bool:
    """Whether this paramiko keeps the state the fast path reads and writes."""
    return all(hasattr(packetizer, name) for name in _STATE)


def _next_iv(iv: bytes) -> bytes:
    # RFC 5647 7.1: a fixed 4-byte field, then a 64-bit invocation counter.
    count = (int.from_bytes(iv[4:], "big") + 1) & 0xFFFFFFFFFFFFFFFF
    return iv[:4] + count.to_bytes(8, "big")


class Packetizer(_Packetizer):
    """paramiko's Packetizer with a batched AES-GCM path in each direction.

    Not constructed: :func:`install` swaps the class of a Transport's
    packetizer, so every field below starts as the class default.
    """

    _rbuf: bytearray | None = None
    _rstart = 0
    _rend = 0
    _handshake_done = False
    _is_tcp: bool | None = None
    # The transport whose packets these are (a weak reference: it holds us).
    _owner: weakref.ref[paramiko.Transport] | None = None
    _in_ok: bool | None = None
    _out_ok: bool | None = None
    _obuf: bytearray | None = None
    _pbuf: bytearray | None = None
    # Packets sealed by send_channel_data(), to tell which path ran.
    sealed = 0

    # -- reading (the transport thread only) ------------------------------

    def _fast_in(self) -> bool:
        if self._in_ok is None:
            d = self.__dict__
            self._in_ok = bool(
                d[_AEAD_IN]
                and d[_COMPRESS_ENGINE_IN] is None
                and not d[_DUMP_PACKETS]
                and self._tcp()
            )
        return self._in_ok

    # What _fast_in() and _fast_out() depend on changes only through these.

    def set_inbound_cipher(self, *args: Any, **kwargs: Any) -> None:
        super().set_inbound_cipher(*args, **kwargs)
        self._in_ok = None

    def set_outbound_cipher(self, *args: Any, **kwargs: Any) -> None:
        super().set_outbound_cipher(*args, **kwargs)
        self._out_ok = None

    def set_inbound_compressor(self, compressor: Any) -> None:
        super().set_inbound_compressor(compressor)
        self._in_ok = None

    def set_outbound_compressor(self, compressor: Any) -> None:
        super().set_outbound_compressor(compressor)
        self._out_ok = None

    def set_hexdump(self, hexdump: bool) -> None:
        super().set_hexdump(hexdump)
        self._in_ok = self._out_ok = None

    def _tcp(self) -> bool:
        # Over a jump host the "socket" is a paramiko Channel, with a
        # ProxyCommand a pipe: neither has recv_into() nor takes a memoryview.
        if self._is_tcp is None:
            sock = self.__dict__[_SOCKET]
            self._is_tcp = isinstance(sock, socket.socket) and sock.family in (
                socket.AF_INET,
                socket.AF_INET6,
            )
        return self._is_tcp

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
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
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

    # -- writing (any thread, under paramiko's write lock) ------------------

    def _fast_out(self) -> bool:
        if self._out_ok is None:
            d = self.__dict__
            self._out_ok = bool(
                d[_AEAD_OUT]
                and d[_COMPRESS_ENGINE_OUT] is None
                and not d[_DUMP_PACKETS]
                and self._tcp()
            )
        return self._out_ok

    def send_channel_data(self, chanid: int, chunks: list[memoryview]) -> None:
        """One CHANNEL_DATA packet per chunk, sealed into one buffer and sent at once."""
        d = self.__dict__
        # The cipher changes only during a key exchange, which the caller
        # holds off (clear_to_send_lock).
        if not self._fast_out():
            for chunk in chunks:
                m = paramiko.Message()
                m.add_byte(bytes([MSG_CHANNEL_DATA]))
                m.add_int(chanid)
                m.add_string(bytes(chunk))
                self.send_message(m)
            return
        with d[_WRITE_LOCK]:
            if len(chunks) == 1 and len(chunks[0]) <= SMALL:
                pos = self._seal_one(chanid, chunks[0])
            else:
                pos = self._seal_batch(chanid, chunks)
            d[_SENT_BYTES] += pos
            d[_SENT_PACKETS] += len(chunks)
            self.sealed += len(chunks)
            if (
                d[_SENT_PACKETS] >= self.REKEY_PACKETS
                or d[_SENT_BYTES] >= self.REKEY_BYTES
            ) and not d[_NEED_REKEY]:
                d[_RECEIVED_BYTES_OVERFLOW] = 0
                d[_RECEIVED_PACKETS_OVERFLOW] = 0
                self._trigger_rekey()  # type: ignore[attr-defined]

    def _seal_batch(self, chanid: int, chunks: list[memoryview]) -> int:
        """Seal the packets into a reused buffer and write it; its length."""
        d = self.__dict__
        engine = d[_BLOCK_ENGINE_OUT]
        iv = d[_IV_OUT]
        # Reused under the write lock: allocating (and zeroing) a
        # quarter MiB per batch showed in the profile.
        need = sum(map(len, chunks)) + len(chunks) * (4 + 10 + MAX_PADDING + TAG)
        out = self._obuf
        if out is None or len(out) < need:
            out = self._obuf = bytearray(need)
        longest = max(map(len, chunks)) + 10 + MAX_PADDING
        plain = self._pbuf
        if plain is None or len(plain) < longest:
            plain = self._pbuf = bytearray(longest)
        pads = os.urandom(MAX_PADDING * len(chunks))
        pos = 0
        with memoryview(out) as ov, memoryview(plain) as pv:
            for i, chunk in enumerate(chunks):
                n = len(chunk)
                body = 9 + n  # type, channel, length, data
                padding = 3 + 16 - ((body + 4) % 16)
                length = body + padding + 1
                struct.pack_into(">I", out, pos, length)
                struct.pack_into(
                    ">BBII", plain, 0, padding, MSG_CHANNEL_DATA, chanid, n
                )
                pv[10 : 10 + n] = chunk
                pv[10 + n : 10 + n + padding] = pads[
                    i * MAX_PADDING : i * MAX_PADDING + padding
                ]
                engine.encrypt_into(
                    iv,
                    pv[:length],
                    ov[pos : pos + 4],
                    ov[pos + 4 : pos + 4 + length + TAG],
                )
                iv = _next_iv(iv)
                pos += 4 + length + TAG
            d[_IV_OUT] = iv
            seq = d[_SEQUENCE_NUMBER_OUT]
            d[_SEQUENCE_NUMBER_OUT] = (seq + len(chunks)) & 0xFFFFFFFF
            self._write(ov[:pos])
        return pos

    def _seal_one(self, chanid: int, chunk: memoryview) -> int:
        """One small packet, the way of fewest steps (a round trip's)."""
        d = self.__dict__
        n = len(chunk)
        padding = 3 + 16 - ((n + 13) % 16)
        header = struct.pack(">I", n + 10 + padding)
        body = (
            struct.pack(">BBII", padding, MSG_CHANNEL_DATA, chanid, n)
            + chunk
            + os.urandom(padding)
        )
        iv = d[_IV_OUT]
        packet = header + d[_BLOCK_ENGINE_OUT].encrypt(iv, body, header)
        d[_IV_OUT] = _next_iv(iv)
        d[_SEQUENCE_NUMBER_OUT] = (d[_SEQUENCE_NUMBER_OUT] + 1) & 0xFFFFFFFF
        self._write(memoryview(packet))
        return len(packet)

    def _write(self, data: memoryview) -> None:
        # paramiko's write_all(), without its copy of the rest after each
        # partial send: the socket has a timeout (the transport's 0.1 s
        # poll), so a full socket means try again unless closed.
        d = self.__dict__
        d[_KEEPALIVE_LAST] = time.time()
        sock = d[_SOCKET]
        while data:
            try:
                n = sock.send(data)
            except TimeoutError:
                n = 0
            except OSError as exc:
                if exc.errno != errno.EAGAIN:
                    raise EOFError() from None
                n = 0
            if n == 0 and d[_CLOSED]:
                raise EOFError()
            data = data[n:]


def install(transport: paramiko.Transport) -> None:
    """Give ``transport`` the fast packetizer (before anything wraps its methods)."""
    packetizer = transport.packetizer
    if type(packetizer) is _Packetizer and usable(packetizer):
        packetizer.__class__ = Packetizer
        assert isinstance(packetizer, Packetizer)
        packetizer._owner = weakref.ref(transport)
