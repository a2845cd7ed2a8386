"""OpenSSH's unix-socket forwarding messages, which paramiko lacks (paramiko#544).

OpenSSH's PROTOCOL file, section 2.4 ("connection: Unix domain socket
forwarding"), defines them:

- channel ``direct-streamlocal@openssh.com``: string socket path, string
  reserved, uint32 reserved (``-L port:/remote.sock``), opened with open();
- global request ``streamlocal-forward@openssh.com`` and
  ``cancel-streamlocal-forward@openssh.com``: string socket path
  (``-R /remote.sock:...``), sent with paramiko's public ``global_request``;
- channel ``forwarded-streamlocal@openssh.com`` from the server: string
  socket path, string reserved.

It also gives ``ServerAliveInterval`` what it needs and paramiko lacks
(paramiko#918: its keepalive never learns whether the server is alive): the
time the last packet arrived, and (from ``requests``) a
``keepalive@openssh.com`` probe that wants a reply without taking the reply
meant for another global request.

paramiko's Transport builds channel-open messages only for the kinds it
knows and refuses every unknown kind the server opens, so this subclass adds
the two channel messages, and keeps the server's words when it refuses a
channel (paramiko logs them and raises a generic "Connect failed").

Each of these needs private names of paramiko's; where ``probe`` found one
missing, that feature falls back to paramiko's own way (a channel opened by
``open_channel``, one reply slot for global requests, ``request_port_forward``)
or, for unix-socket forwards, which paramiko cannot do at all, is refused
with ``probe.why_not``'s line.  ``speedups=False`` (``-o FastPath=no``)
leaves every packet to paramiko.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence

import paramiko
from paramiko.common import cMSG_CHANNEL_OPEN

from ..errors import ForwardError
from . import fastpath, probe, rekey
from .requests import (
    CANCEL_REQUEST,
    FORWARD_REQUEST,
    KEEPALIVE,
    Requests,
)

__all__ = [
    "CANCEL_REQUEST",
    "DIRECT",
    "FORWARDED",
    "FORWARD_REQUEST",
    "KEEPALIVE",
    "STREAMLOCAL_PORT",
    "ServerTransport",
    "Transport",
]

DIRECT = "direct-streamlocal@openssh.com"
FORWARDED = "forwarded-streamlocal@openssh.com"

# An incoming forwarded-streamlocal channel is handed to paramiko as a
# forwarded-tcpip one reporting (path, STREAMLOCAL_PORT): a real TCP listener
# always reports its bound port, never 0, so the two cannot be confused.
STREAMLOCAL_PORT = 0


class Transport(Requests):
    """paramiko's Transport plus OpenSSH's streamlocal channels."""

    def __init__(
        self, sock: socket.socket | paramiko.Channel, *, speedups: bool = True
    ) -> None:
        super().__init__(sock)
        # Off for this connection (-o FastPath=no): the relay's splice asks.
        self.speedups = speedups
        # First: what wraps the packetizer's methods below must wrap its own.
        if speedups and probe.available("fastpath"):
            fastpath.install(self)
        if probe.available("rekey"):
            rekey.install(self)
        # Why each refused channel was refused, by channel id: paramiko
        # keeps one slot for the whole transport, which concurrent opens
        # (a SOCKS proxy's) overwrite each other's reasons in.
        self._refusals: dict[int, paramiko.ChannelException] = {}
        # Opens given up on: closed if the server confirms them after all,
        # so no channel is left open on the server with nobody reading it.
        self._abandoned: set[int] = set()
        # The host key types to offer, in order, set before start_client():
        # paramiko itself lists every certificate type after every plain one.
        self.host_key_types: tuple[str, ...] | None = None
        # When the last packet arrived (time.monotonic()): the only sign of
        # life a dead-peer check can trust, whatever the packet was.
        self.last_received = time.monotonic()
        read = self.packetizer.read_message

        def read_message() -> tuple[int, paramiko.Message]:
            message: tuple[int, paramiko.Message] = read()
            self.last_received = time.monotonic()
            return message

        self.packetizer.read_message = read_message  # type: ignore[method-assign]

    @property
    def preferred_keys(self) -> tuple[str, ...]:
        if self.host_key_types is not None:
            return self.host_key_types
        return tuple(super().preferred_keys)

    def open(
        self, kind: str, fields: Sequence[str | int], timeout: float
    ) -> paramiko.Channel:
        """Open a channel of ``kind`` whose type-specific fields are ``fields``.

        Mirrors paramiko's open_channel(), which cannot add the fields of a
        kind it does not know.  Raises ChannelException (with the server's
        reason) or SSHException as it does.
        """
        if not self.is_active():
            raise paramiko.SSHException("SSH session not active")
        if not probe.available("streamlocal"):
            return self._open_as_paramiko(kind, fields, timeout)
        m = paramiko.Message()
        with self.lock:
            window = self.default_window_size
            packet = self.default_max_packet_size
            chanid = self._next_channel()  # type: ignore[attr-defined]
            m.add_byte(cMSG_CHANNEL_OPEN)
            m.add_string(kind)
            m.add_int(chanid)
            m.add_int(window)
            m.add_int(packet)
            for value in fields:
                if isinstance(value, int):
                    m.add_int(value)
                else:
                    m.add_string(value)
            chan = paramiko.Channel(chanid)
            self._channels.put(chanid, chan)  # type: ignore[attr-defined]
            self.channel_events[chanid] = event = threading.Event()
            self.channels_seen[chanid] = True
            chan._set_transport(self)  # type: ignore[attr-defined]
            chan._set_window(window, packet)  # type: ignore[attr-defined]
        self._send_user_message(m)  # type: ignore[attr-defined]
        deadline = time.monotonic() + timeout
        while not event.wait(0.1):
            if not self.is_active():
                raise self.get_exception() or paramiko.SSHException(
                    "Unable to open channel."
                )
            if time.monotonic() > deadline:
                with self.lock:
                    if not event.is_set():
                        self._abandoned.add(chanid)
                        raise paramiko.SSHException("Timeout opening channel.")
        with self.lock:
            refusal = self._refusals.pop(chanid, None)
        if refusal is not None:
            raise refusal
        opened: paramiko.Channel | None = self._channels.get(chanid)  # type: ignore[attr-defined]
        if opened is None:
            raise paramiko.SSHException("Unable to open channel.")
        return opened

    def _open_as_paramiko(
        self, kind: str, fields: Sequence[str | int], timeout: float
    ) -> paramiko.Channel:
        # paramiko's open_channel() knows the fields of a direct-tcpip
        # channel (host, port, origin host, origin port), and no other.
        if kind != "direct-tcpip":
            raise ForwardError(probe.why_not("streamlocal") or "")
        host, port, origin, origin_port = fields
        assert isinstance(host, str) and isinstance(origin, str)
        assert isinstance(port, int) and isinstance(origin_port, int)
        return self.open_channel(
            kind, (host, port), (origin, origin_port), timeout=timeout
        )

    def _parse_channel_open(self, m: paramiko.Message) -> None:
        if not probe.available("streamlocal"):
            super()._parse_channel_open(m)  # type: ignore[misc]
            return
        start = m.packet.tell()
        kind = m.get_text()
        if kind != FORWARDED:
            m.packet.seek(start)
            super()._parse_channel_open(m)  # type: ignore[misc]
            return
        # Rewritten as forwarded-tcpip so that paramiko accepts the channel
        # with its own code and hands it to the same handler.
        chanid, window, packet = m.get_int(), m.get_int(), m.get_int()
        path = m.get_text()
        tcp = paramiko.Message()
        tcp.add_string("forwarded-tcpip")
        for value in (chanid, window, packet):
            tcp.add_int(value)
        tcp.add_string(path)
        tcp.add_int(STREAMLOCAL_PORT)
        tcp.add_string("")  # no origin address for a unix socket
        tcp.add_int(0)
        super()._parse_channel_open(paramiko.Message(tcp.asbytes()))  # type: ignore[misc]

    def _parse_channel_open_success(self, m: paramiko.Message) -> None:
        if not probe.available("streamlocal"):
            super()._parse_channel_open_success(m)  # type: ignore[misc]
            return
        start = m.packet.tell()
        chanid = m.get_int()
        m.packet.seek(start)
        super()._parse_channel_open_success(m)  # type: ignore[misc]
        with self.lock:
            late = chanid in self._abandoned
            self._abandoned.discard(chanid)
        chan = self._channels.get(chanid) if late else None  # type: ignore[attr-defined]
        if chan is not None:
            chan.close()

    def _parse_channel_open_failure(self, m: paramiko.Message) -> None:
        # As paramiko's, but the exception carries the server's reason
        # ("Connection refused", "No route to host"): a SOCKS reply and the
        # user's error message are chosen from it.
        if not probe.available("streamlocal"):
            super()._parse_channel_open_failure(m)  # type: ignore[misc]
            return
        chanid, code = m.get_int(), m.get_int()
        text = m.get_text()
        self.logger.debug(f"channel {chanid} open failed: {code} {text}")
        with self.lock:
            waited = chanid not in self._abandoned
            self._abandoned.discard(chanid)
            event = self.channel_events.pop(chanid, None)
            if event is not None:
                if waited:
                    self._refusals[chanid] = paramiko.ChannelException(code, text)
                self._channels.delete(chanid)  # type: ignore[attr-defined]
                event.set()


class ServerTransport(Transport):
    """The server's transport: notes a direct-streamlocal channel's path,
    which paramiko does not parse, for the check that follows."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.streamlocal_path: str | None = None

    def _parse_channel_open(self, m: paramiko.Message) -> None:
        if not probe.available("streamlocal"):
            super()._parse_channel_open(m)
            return
        start = m.packet.tell()
        if m.get_text() == DIRECT:
            m.get_int(), m.get_int(), m.get_int()  # channel, window, packet size
            self.streamlocal_path = m.get_text()
        m.packet.seek(start)
        super()._parse_channel_open(m)
