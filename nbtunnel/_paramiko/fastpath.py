"""SSH packets the short way, with paramiko's own code as the fallback.

paramiko's cost is per packet, not per byte: profiling the engine
(benchmarks/profile_engine.py) showed, for every 32 KiB that arrives, two
recv() calls, a Message read through a BytesIO, a locked channel lookup
and a threading Timer cancelled; for every 32 KiB sent a Message, two
locks, an Event poll and a send().  :class:`Packetizer`, swapped in by
:func:`install`, keeps paramiko's wire format and bookkeeping (sequence
numbers, GCM counters, rekey limits) and, with AES-GCM over TCP:

- reads the socket in large chunks and decrypts one packet at a time from
  them, handing channel data straight to its channel (``gcm_read``);
- seals a batch of channel-data packets into one buffer and one send()
  (``gcm_send``; ordered.py sends through it);
- asks for quick ACKs (see ``Reading._fill``).

Any other cipher, compression, a hexdump or a socket that is no TCP
socket (a jump host's channel, a ProxyCommand) leaves every packet to
paramiko.  It reads and writes paramiko's private, name-mangled state, as
paramiko's own methods do; ``probe`` checks that it is there (and runs it
once each way, :func:`round_trip`) before :func:`install` is ever called.
"""

from __future__ import annotations

import os
import socket
import threading
import weakref
from typing import Any

import paramiko
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from paramiko.packet import Packetizer as _Packetizer

from . import gcm
from .gcm import _STATE
from .gcm_read import Reading
from .gcm_send import Sending


def usable(packetizer: Any) -> bool:
    """Whether this paramiko keeps the state the fast path reads and writes."""
    return all(hasattr(packetizer, name) for name in _STATE)


class Packetizer(Reading, Sending):
    """paramiko's Packetizer with a batched AES-GCM path in each direction.

    Not constructed: :func:`install` swaps the class of a Transport's
    packetizer, so every field of the halves starts as the class default.
    """

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


def install(transport: paramiko.Transport) -> None:
    """Give ``transport`` the fast packetizer (before anything wraps its methods).

    The caller asks ``probe.available("fastpath")`` first; what is checked
    here is this one packetizer (someone else's subclass is left alone).
    """
    packetizer = transport.packetizer
    if type(packetizer) is _Packetizer and usable(packetizer):
        packetizer.__class__ = Packetizer
        assert isinstance(packetizer, Packetizer)
        packetizer._owner = weakref.ref(transport)


# -- the fast path, once each way (the probe's test) ---------------------------


class Unusable(Exception):
    """What about this paramiko the fast path cannot work with."""


def round_trip() -> None:
    """paramiko's packets read by the fast path and the fast path's read by
    paramiko, over loopback TCP (the only sockets it takes), with one key;
    :class:`Unusable` says what went wrong (probe.py runs it once)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        a = socket.create_connection(server.getsockname(), timeout=2)
        b, _ = server.accept()
    try:
        b.settimeout(2)
        # paramiko's __init__ sets the state both read and write.
        ours, theirs = Packetizer(a), _Packetizer(b)
        key, iv_in, iv_out = os.urandom(16), os.urandom(12), os.urandom(12)
        _gcm(theirs, ours, key, iv_in)
        _gcm(ours, theirs, key, iv_out)

        def give_up() -> None:
            ours.close()
            theirs.close()

        # Whatever goes wrong below must end, not wait: closing the
        # packetizers makes both readers give up.
        timer = threading.Timer(3.0, give_up)
        timer.start()
        try:
            _both_ways(ours, theirs)
        finally:
            timer.cancel()
    except Unusable:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever it is, the feature is off
        raise Unusable(
            f"a Packetizer the fast path can read and write ({type(exc).__name__}: "
            f"{exc})"
        ) from None
    finally:
        a.close()
        b.close()


def _gcm(sender: Any, receiver: Any, key: bytes, iv: bytes) -> None:
    # As paramiko's Transport sets an AES-GCM key (its stubs know no AEAD).
    sender.set_outbound_cipher(AESGCM(key), 16, None, 16, None, aead=True, iv_out=iv)
    receiver.set_inbound_cipher(AESGCM(key), 16, None, 16, None, aead=True, iv_in=iv)


def _both_ways(ours: Packetizer, theirs: _Packetizer) -> None:
    payloads = [b"probe", os.urandom(5000), b"x" * 100]
    for data in payloads[:2]:
        m = paramiko.Message()
        m.add_byte(bytes([gcm.MSG_CHANNEL_DATA]))
        m.add_int(7)
        m.add_string(data)
        theirs.send_message(m)
    for data in payloads[:2]:
        _expect(ours.read_message(), data)
    if not ours._fast_in() or not ours._fast_out():
        raise Unusable("a Packetizer the fast path takes (AES-GCM state)")
    # One small packet (sealed alone), then a batch (encrypt_into).
    ours.send_channel_data(7, [memoryview(payloads[0])])
    ours.send_channel_data(7, [memoryview(payloads[1]), memoryview(payloads[2])])
    for data in payloads:
        _expect(theirs.read_message(), data)


def _expect(got: tuple[int, paramiko.Message], data: bytes) -> None:
    ptype, m = got
    if ptype != gcm.MSG_CHANNEL_DATA or m.get_int() != 7 or m.get_binary() != data:
        raise Unusable("a Packetizer that reads back what the fast path wrote")
