"""AES-GCM packets as paramiko's Packetizer keeps them, for the fast path.

The packet format's numbers, the names under which paramiko's Packetizer
keeps its private state (name-mangled: ``_Packetizer__socket``), and
:class:`Base`, what the reading half (``gcm_read``) and the sending half
(``gcm_send``) of :class:`fastpath.Packetizer` share.  The halves read and
write that state as paramiko's own methods do; ``fastpath.usable`` checks
that every name here is there.
"""

from __future__ import annotations

import socket

from paramiko.packet import Packetizer as _Packetizer

MSG_CHANNEL_DATA = 94
TAG = 16  # the GCM tag, where other ciphers have their MAC

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
# Every field above: what fastpath.usable() checks this paramiko still has.
_STATE = tuple(
    value
    for name, value in list(globals().items())
    if name.isupper()
    and isinstance(value, str)
    and value.startswith(_P)
    and value != _P
)


def _next_iv(iv: bytes) -> bytes:
    # RFC 5647 7.1: a fixed 4-byte field, then a 64-bit invocation counter.
    count = (int.from_bytes(iv[4:], "big") + 1) & 0xFFFFFFFFFFFFFFFF
    return iv[:4] + count.to_bytes(8, "big")


class Base(_Packetizer):
    """What both halves share: whether the socket can take the fast path.

    Not constructed (see :class:`fastpath.Packetizer`): every field starts
    as the class default.
    """

    _is_tcp: bool | None = None

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

    def _usable(self, aead: str, compress: str) -> bool:
        """Whether one direction can take the fast path: AES-GCM (``aead`` set),
        no compression, no hexdump, a TCP socket.  Asked once per key
        exchange (the halves cache the answer until a ``set_*`` resets it)."""
        d = self.__dict__
        return bool(
            d[aead] and d[compress] is None and not d[_DUMP_PACKETS] and self._tcp()
        )
