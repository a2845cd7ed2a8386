"""The sending half of the fast path: channel data sealed in batches.

:class:`Sending` seals a batch of CHANNEL_DATA packets with AES-GCM into
one buffer and writes it with as few send() calls as the socket takes
(ordered.py sends through it).  Any thread may call it, under paramiko's
write lock.
"""

from __future__ import annotations

import errno
import os
import struct
import time

import paramiko

from .gcm import (
    _AEAD_OUT,
    _BLOCK_ENGINE_OUT,
    _CLOSED,
    _COMPRESS_ENGINE_OUT,
    _IV_OUT,
    _KEEPALIVE_LAST,
    _NEED_REKEY,
    _RECEIVED_BYTES_OVERFLOW,
    _RECEIVED_PACKETS_OVERFLOW,
    _SENT_BYTES,
    _SENT_PACKETS,
    _SEQUENCE_NUMBER_OUT,
    _SOCKET,
    _WRITE_LOCK,
    MSG_CHANNEL_DATA,
    TAG,
    Base,
    _next_iv,
)

# Padding is 4 to 19 bytes (RFC 4253 section 6 with a 16-byte block).
MAX_PADDING = 19
# Up to this, one chunk is sealed by concatenation: fewer steps than the
# batch's buffers, where its copies no longer matter.
SMALL = 4096


class Sending(Base):
    """The sending half of :class:`fastpath.Packetizer` (any thread, under
    paramiko's write lock)."""

    _out_ok: bool | None = None
    _obuf: bytearray | None = None
    _pbuf: bytearray | None = None
    # Packets sealed by send_channel_data(), to tell which path ran.
    sealed = 0

    def _fast_out(self) -> bool:
        if self._out_ok is None:
            self._out_ok = self._usable(_AEAD_OUT, _COMPRESS_ENGINE_OUT)
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
