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

paramiko's Transport builds channel-open messages only for the kinds it
knows and refuses every unknown kind the server opens, so this subclass adds
the two channel messages, and keeps the server's words when it refuses a
channel (paramiko logs them and raises a generic "Connect failed").
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence

import paramiko
from paramiko.common import DEBUG, cMSG_CHANNEL_OPEN

DIRECT = "direct-streamlocal@openssh.com"
FORWARDED = "forwarded-streamlocal@openssh.com"
FORWARD_REQUEST = "streamlocal-forward@openssh.com"
CANCEL_REQUEST = "cancel-streamlocal-forward@openssh.com"

# An incoming forwarded-streamlocal channel is handed to paramiko as a
# forwarded-tcpip one reporting (path, STREAMLOCAL_PORT): a real TCP listener
# always reports its bound port, never 0, so the two cannot be confused.
STREAMLOCAL_PORT = 0


class Transport(paramiko.Transport):
    """paramiko's Transport plus OpenSSH's streamlocal channels."""

    def __init__(self, sock: socket.socket | paramiko.Channel) -> None:
        super().__init__(sock)
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

    def _parse_channel_open(self, m: paramiko.Message) -> None:
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
        chanid, code = m.get_int(), m.get_int()
        text = m.get_text()
        self._log(DEBUG, f"channel {chanid} open failed: {code} {text}")  # type: ignore[attr-defined]
        with self.lock:
            waited = chanid not in self._abandoned
            self._abandoned.discard(chanid)
            event = self.channel_events.pop(chanid, None)
            if event is not None:
                if waited:
                    self._refusals[chanid] = paramiko.ChannelException(code, text)
                self._channels.delete(chanid)  # type: ignore[attr-defined]
                event.set()
