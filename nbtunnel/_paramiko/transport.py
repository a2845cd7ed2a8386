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
from typing import Any

import paramiko
from paramiko.common import MSG_KEXINIT, cMSG_CHANNEL_OPEN

from ..errors import ForwardError
from . import fastpath, probe, rekey
from .opening import Done, Opening, Pending, Threaded
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


class _Events(dict[int, threading.Event]):
    """``Transport.channel_events`` whose ``values()`` is a copy."""

    def values(self) -> list[threading.Event]:  # type: ignore[override]
        return list(super().values())


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
        # paramiko's dying thread sets every waiting open's event looping
        # over this dict without its lock; an open started meanwhile (64 in
        # flight per forward in a burst) would end that loop with "changed
        # size during iteration" and leave the rest unset.
        self.channel_events = _Events(self.channel_events)
        # The host key types to offer, in order, set before start_client():
        # paramiko itself lists every certificate type after every plain one.
        self.host_key_types: tuple[str, ...] | None = None
        # When the last packet arrived (time.monotonic()): the only sign of
        # life a dead-peer check can trust, whatever the packet was.
        self.last_received = time.monotonic()
        # The server's last KEXINIT, less its type byte: which key exchange
        # was agreed, for -v (paramiko forgets its own record of it).
        self.server_kexinit = b""
        read = self.packetizer.read_message

        def read_message() -> tuple[int, paramiko.Message]:
            message: tuple[int, paramiko.Message] = read()
            self.last_received = time.monotonic()
            if message[0] == MSG_KEXINIT:
                self.server_kexinit = message[1].asbytes()
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
        reason) or SSHException as it does.  Waits on one event, woken by
        the answer or the connection's end, instead of paramiko's 0.1 s polls.
        """
        if not probe.available("streamlocal"):
            if not self.is_active():
                raise paramiko.SSHException("SSH session not active")
            return self._open_as_paramiko(kind, fields, timeout)
        answers: list[Any] = []
        answered = threading.Event()

        def done(result: Any) -> None:
            answers.append(result)
            answered.set()

        opening = self.open_async(kind, fields, timeout, done)
        if not answered.wait(timeout) and opening.give_up():
            raise paramiko.SSHException("Timeout opening channel.")
        answered.wait()  # answered meanwhile: on_done is on its way
        result = answers[0]
        if isinstance(result, BaseException):
            raise result
        assert isinstance(result, paramiko.Channel)
        return result

    def open_async(
        self, kind: str, fields: Sequence[str | int], timeout: float, on_done: Done
    ) -> Opening:
        """Start opening a channel as open() does, without waiting for it.

        ``on_done`` gets the channel or the exception open() would raise,
        once, in paramiko's thread (see ``opening.Done``: it must return at
        once).  The caller keeps the deadline: ``give_up()`` on what this
        returns when it passes.  Where the gate must leave the open to
        paramiko, it blocks in a thread of its own, for ``timeout`` at
        most.  Raises SSHException if the connection is closed, and
        RuntimeError when that thread cannot start.
        """
        if not self.is_active():
            raise paramiko.SSHException("SSH session not active")
        if not probe.available("streamlocal"):
            return Threaded(
                lambda: self._open_as_paramiko(kind, fields, timeout),
                on_done,
                f"nbtunnel-open-{kind}",
            )
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
            # paramiko sets it on the server's answer, and sets them all
            # when the connection dies: the answer comes to us.
            self.channel_events[chanid] = pending = Pending(self, chanid, on_done)
            # paramiko's channel map holds channels weakly: this one lives
            # as long as its open is waited for (and closed if late).
            pending.chan = chan
            self.channels_seen[chanid] = True
            chan._set_transport(self)  # type: ignore[attr-defined]
            chan._set_window(window, packet)  # type: ignore[attr-defined]
        try:
            self._send_user_message(m)  # type: ignore[attr-defined]
        except (paramiko.SSHException, EOFError, OSError) as exc:
            # A key exchange that never ended, a socket that failed: the
            # open ends here, and a late answer is closed.
            if self._give_up(pending):
                on_done(exc)
            return pending
        if not self.is_active():
            pending.set()  # it died before the open was registered
        return pending

    def _outcome(self, chanid: int) -> Any:
        """What an open that paramiko's thread just set has come to."""
        refusal = self._refusals.pop(chanid, None)
        if refusal is not None:
            return refusal
        if not self.is_active():
            dead: BaseException | None = self.saved_exception
            return dead or paramiko.SSHException("Unable to open channel.")
        opened: paramiko.Channel | None = self._channels.get(chanid)  # type: ignore[attr-defined]
        return opened or paramiko.SSHException("Unable to open channel.")

    def _give_up(self, pending: Pending) -> bool:
        # Under the transport's lock, as paramiko sets the event: either
        # the answer came first, or a late confirmation finds it abandoned.
        with self.lock, pending.lock:
            if pending.over:
                return False
            pending.over = True
            self._abandoned.add(pending.chanid)
            return True

    def close(self) -> None:
        super().close()
        # paramiko sets the events of pending opens only when its thread
        # meets the end of the connection, not when it is closed from here.
        for event in list(self.channel_events.values()):
            if isinstance(event, Pending):
                event.set()

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
        # Held from here: the map holds channels weakly, and the open's own
        # hold on it ends as paramiko drops its event.
        chan = self._channels.get(chanid)  # type: ignore[attr-defined]
        super()._parse_channel_open_success(m)  # type: ignore[misc]
        with self.lock:
            late = chanid in self._abandoned
            self._abandoned.discard(chanid)
        if late and chan is not None:
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
