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
  (``gcm_send``; splice.py sends through it);
- asks for quick ACKs (see ``Reading._fill``).

Any other cipher, compression, a hexdump or a socket that is no TCP
socket (a jump host's channel, a ProxyCommand) leaves every packet to
paramiko.  It reads and writes paramiko's private, name-mangled state, as
paramiko's own methods do; ``probe`` checks that it is there (and runs it
once each way) before :func:`install` is ever called.
"""

from __future__ import annotations

import weakref
from typing import Any

import paramiko
from paramiko.packet import Packetizer as _Packetizer

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
