"""One client's SSH connection to the embedded server: login, channels, remote listeners.

What it allows is what ``ssh -N`` with forwards needs, as OpenSSH's sshd
does it with ``GatewayPorts no``: ``direct-tcpip`` and
``direct-streamlocal@openssh.com`` channels (``-L``), ``tcpip-forward`` and
``streamlocal-forward@openssh.com`` (``-R``), and their cancels.  It serves
no shell, and it reaches and binds loopback only.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import paramiko
from paramiko.common import (
    AUTH_FAILED,
    AUTH_SUCCESSFUL,
    OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
    OPEN_FAILED_CONNECT_FAILED,
    OPEN_SUCCEEDED,
)

from .._paramiko.transport import (
    CANCEL_REQUEST,
    DIRECT,
    FORWARD_REQUEST,
    FORWARDED,
    STREAMLOCAL_PORT,
    ServerTransport,
)
from ..forward.relay import Relay
from ..platform import sockets
from ..status import Counters

logger = logging.getLogger("nbtunnel.testing")

# How long a connect to a loopback target, or the client's answer to a
# forwarded channel, may take before the connection attempt is given up.
CONNECT_TIMEOUT = 10.0
# Bind addresses that mean "wherever the server allows": sshd with
# GatewayPorts no (its default) narrows them to loopback, and so does this.
WILDCARDS = ("", "*", "0.0.0.0", "::", "localhost")


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (a literal or ``localhost``)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Session(paramiko.ServerInterface):
    """Decides what one connection may do, and serves it."""

    def __init__(
        self,
        transport: ServerTransport,
        user: str,
        client_blob: bytes,
        counters: Counters,
        spawn: Callable[[Callable[[], None], str], None],
    ) -> None:
        self.transport = transport
        self.user = user
        self.client_blob = client_blob
        self.counters = counters
        self._spawn = spawn
        self._lock = threading.Lock()
        # Targets connected during the channel check, by channel id, until
        # the channel is accepted and relayed.
        self._pending: dict[int, socket.socket] = {}
        # Remote listeners: (address as asked, port or 0 for a unix socket).
        self._listeners: dict[tuple[str, int], socket.socket] = {}
        self.relays: set[Relay] = set()

    # -- login --------------------------------------------------------------

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if username == self.user and key.asbytes() == self.client_blob:
            return AUTH_SUCCESSFUL
        return AUTH_FAILED

    # -- channels (-L) --------------------------------------------------------

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind != DIRECT:
            # "session" among them: this is a forwarding peer, not a shell.
            return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        path, self.transport.streamlocal_path = self.transport.streamlocal_path, None
        family = sockets.unix_family()
        if not path or family is None:  # no unix sockets here (Windows)
            return OPEN_FAILED_CONNECT_FAILED
        sock = socket.socket(family, socket.SOCK_STREAM)
        return self._connect(chanid, sock, path)

    def check_channel_direct_tcpip_request(
        self, chanid: int, origin: tuple[str, int], destination: tuple[str, int]
    ) -> int:
        host, port = destination
        if not is_loopback(host):
            logger.info("refused a channel to %s:%s: not loopback", host, port)
            return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        try:
            info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        except (OSError, UnicodeError):
            return OPEN_FAILED_CONNECT_FAILED
        return self._connect(chanid, socket.socket(info[0], info[1]), info[4])

    def _connect(self, chanid: int, sock: socket.socket, address: Any) -> int:
        # Connected before the channel is confirmed, as sshd does, so that a
        # refused target is a refused channel with the right reason code.
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            logger.info("channel to %s failed: %s", address, exc)
            return OPEN_FAILED_CONNECT_FAILED
        sock.settimeout(None)
        with self._lock:
            self._pending[chanid] = sock
        return OPEN_SUCCEEDED

    def serve_channel(self, chan: paramiko.Channel) -> None:
        """Relay a confirmed -L channel to the target connected for it."""
        with self._lock:
            sock = self._pending.pop(chan.get_id(), None)
        if sock is None:
            chan.close()
            return
        self._relay(sock, chan, target_is_sock=True)

    def _relay(
        self, sock: socket.socket, chan: paramiko.Channel, *, target_is_sock: bool
    ) -> None:
        relay = Relay(sock, chan, self.counters, target_is_sock=target_is_sock)
        with self._lock:
            self.relays.add(relay)

        def run() -> None:
            self.counters.opened()
            try:
                relay.run()
            finally:
                self.counters.closed()
                with self._lock:
                    self.relays.discard(relay)

        self._spawn(run, "nbtunnel-testing-relay")

    # -- remote listeners (-R) ------------------------------------------------

    def check_port_forward_request(self, address: str, port: int) -> int | bool:
        if address not in WILDCARDS and not is_loopback(address):
            logger.info("refused to listen on %s: loopback only", address)
            return False
        host = "127.0.0.1" if address in WILDCARDS else address.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sockets.exclusive_address(sock)
            sock.bind((host, port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            logger.info("cannot listen on %s:%s: %s", host, port, exc)
            return False
        bound = int(sock.getsockname()[1])
        self._listen(sock, (address, bound))
        return bound

    def cancel_port_forward_request(self, address: str, port: int) -> None:
        self._unlisten((address, port))

    def check_global_request(self, kind: str, msg: paramiko.Message) -> bool:
        family = sockets.unix_family()
        if kind == FORWARD_REQUEST and family is None:
            return False  # no unix sockets to listen on here (Windows)
        if kind == FORWARD_REQUEST:
            assert family is not None
            path = msg.get_text()
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.bind(path)  # an existing file is refused, as sshd's default
                sock.listen(128)
            except OSError as exc:
                sock.close()
                logger.info("cannot listen on %s: %s", path, exc)
                return False
            self._listen(sock, (path, STREAMLOCAL_PORT))
            return True
        if kind == CANCEL_REQUEST:
            self._unlisten((msg.get_text(), STREAMLOCAL_PORT))
            return True
        return False  # keepalive@openssh.com among them: "failure" is the answer

    def _listen(self, sock: socket.socket, key: tuple[str, int]) -> None:
        """Serve ``sock`` for the request ``key``: (address as asked, bound
        port), or (path, STREAMLOCAL_PORT) for a unix socket."""
        with self._lock:
            self._listeners[key] = sock
        self._spawn(lambda: self._accept(sock, key), "nbtunnel-testing-listen")

    def _accept(self, listener: socket.socket, key: tuple[str, int]) -> None:
        while True:
            try:
                conn, peer = listener.accept()
            except OSError:
                return  # cancelled or closed
            try:
                if sockets.is_unix(listener):
                    chan = self.transport.open(FORWARDED, [key[0], ""], CONNECT_TIMEOUT)
                else:
                    # The address as the client asked for it, which it routes by.
                    chan = self.transport.open_forwarded_tcpip_channel(
                        (str(peer[0]), int(peer[1])), key
                    )
            except (paramiko.SSHException, OSError, EOFError) as exc:
                logger.info("client refused a forwarded connection: %s", exc)
                conn.close()
                continue
            self._relay(conn, chan, target_is_sock=False)

    def _unlisten(self, key: tuple[str, int]) -> None:
        with self._lock:
            sock = self._listeners.pop(key, None)
        if sock is not None:
            _close_listener(sock)

    def close(self) -> None:
        """Close every listener, pending target and relay of this connection."""
        with self._lock:
            listeners = list(self._listeners.values())
            pending = list(self._pending.values())
            relays = list(self.relays)
            self._listeners.clear()
            self._pending.clear()
        for sock in listeners:
            _close_listener(sock)
        for sock in pending:
            sock.close()
        for relay in relays:
            relay.abort()


def _close_listener(sock: socket.socket) -> None:
    path = sock.getsockname() if sockets.is_unix(sock) else None
    # shutdown() wakes the thread blocked in accept(); close() alone does not.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    if isinstance(path, str) and path:
        with contextlib.suppress(OSError):
            os.unlink(path)
