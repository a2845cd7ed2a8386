"""Remote forwards (ssh -R): the server listens; each connection is served from this machine."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import ConnectError, ForwardError
from ..grammar.forwards import ForwardSpec
from ..platform import sockets
from .base import EventSink, RunningForward
from .dynamic import negotiate
from .relay import Channel, Relay
from .socks import Request, SocksError

# How long this machine tries to reach a -R target before giving up on that
# one connection (the server's client is left waiting meanwhile).
CONNECT_TIMEOUT = 30.0

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class RemoteChannel(Channel, Protocol):
    """An incoming forwarded channel: a Channel the SOCKS handshake can also time."""

    def settimeout(self, timeout: float | None) -> None: ...


class Listening(Protocol):
    """The server-side listener the connection set up (connection.RemoteListener)."""

    @property
    def address(self) -> str: ...
    @property
    def port(self) -> int | None: ...


class RemoteListenerHost(Protocol):
    """What a remote forward needs of the SSH connection."""

    def listen_remote(
        self,
        address: str,
        port: int | None,
        handler: Callable[[Any, tuple[str, int]], None],
    ) -> Listening: ...

    def cancel_remote(self, address: str, port: int | None) -> None: ...


def bind_address(spec: ForwardSpec) -> str:
    """The address a -R forward asks the server to bind, as OpenSSH's ssh sends it.

    RFC 4254 7.1: "localhost" is loopback only, "" every address; the
    server's GatewayPorts decides whether anything wider than loopback is
    honoured.
    """
    host = spec.listen_host
    if host is None:
        return "localhost"
    return "" if host in ("*", "") else host


def connect_here(host: str, port: int) -> socket.socket:
    """Connect from this machine to a TCP target, for a -R forward."""
    sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _no_unix_sockets(path: str) -> ForwardError:
    return ForwardError(
        f"cannot connect to unix socket {path}: unix-socket forwards are not "
        "supported on this system (Windows); use a TCP port"
    )


def connect_unix(path: str) -> socket.socket:
    family = sockets.unix_family()
    if family is None:
        raise _no_unix_sockets(path)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(path)
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    return sock


class RemoteForward(RunningForward):
    """Same as ``ssh -R``: the server listens, and this machine connects to the target.

    Without a target (``-R [bind:]port``) it is OpenSSH 7.6's remote dynamic
    forward: each connection speaks SOCKS, and this machine connects where
    the server's client asks.
    """

    def __init__(
        self,
        index: int,
        spec: ForwardSpec,
        connection: RemoteListenerHost,
        *,
        emit: EventSink | None = None,
    ) -> None:
        if spec.kind != "remote":
            raise ValueError(f"not a remote forward: {spec}")
        super().__init__(index, spec, emit)
        self._connection = connection
        self._listening: Listening | None = None
        self._cancelled = False
        if spec.listen_path is None and bind_address(spec) not in _LOOPBACK:
            self.note = (
                "asked to listen beyond loopback; the server's sshd_config "
                "GatewayPorts decides (set it to clientspecified or yes to allow it)"
            )

    @property
    def listen_host(self) -> str | None:
        return None if self.spec.listen_path is not None else bind_address(self.spec)

    @property
    def listen_port(self) -> int | None:
        if self._listening is not None:
            return self._listening.port
        return self.spec.listen_port

    def start(self) -> None:
        """Ask the server to listen; raises ForwardError if it refuses."""
        if self.spec.target_path is not None and sockets.unix_family() is None:
            # Refused before the server listens, not per connection later.
            raise _no_unix_sockets(self.spec.target_path)
        self._listen()
        self.state = "up"

    def restore(self) -> None:
        """Ask the new connection's server to listen again.

        The same port where one was given; for port 0 whatever the server
        allocates now (the old one may still be held by the old session).
        """
        if self.state != "reconnecting" or self._stopping:
            return
        # The old listener went with the old connection: nothing to cancel.
        self._listening = None
        try:
            self._listen()
        except ForwardError as exc:
            self.state, self.error = "failed", str(exc)
            raise
        self.state = "up"

    def _listen(self) -> None:
        spec = self.spec
        if spec.listen_path is not None:
            self._listening = self._connection.listen_remote(
                spec.listen_path, None, self._incoming
            )
        else:
            self._listening = self._connection.listen_remote(
                bind_address(spec), int(spec.listen_port or 0), self._incoming
            )
        if spec.listen_port == 0:
            # ssh prints this too: the only way a user learns the port.
            target = None if spec.is_dynamic else _target_text(spec)
            self._emit(
                "allocated", forward=self.index, port=self.listen_port, target=target
            )

    def _close_listening(self) -> None:
        if self._listening is not None and not self._cancelled:
            self._cancelled = True
            self._connection.cancel_remote(
                self._listening.address, self._listening.port
            )

    def _incoming(self, chan: RemoteChannel, origin: tuple[str, int]) -> None:
        # Already in a thread of its own (the connection's router).
        self._adopt(self._handle, chan, origin, refuse=chan.close)

    def _handle(self, chan: RemoteChannel, origin: tuple[str, int]) -> None:
        spec = self.spec
        where = f"{origin[0]}:{origin[1]}" if origin[0] else "a unix-socket client"
        asked: list[Request] = []

        def connect(request: Request) -> socket.socket:
            asked.append(request)
            return connect_here(request.host, request.port)

        try:
            if spec.target_path is not None:
                target = spec.target_path
                sock = connect_unix(spec.target_path)
                rest = b""
            elif spec.target_host is not None and spec.target_port is not None:
                target = f"{spec.target_host}:{spec.target_port}"
                sock = connect_here(spec.target_host, spec.target_port)
                rest = b""
            else:
                sock, request, rest = negotiate(chan, connect)
                target = request.target
        except SocksError as exc:
            self._connection_failed(f"SOCKS client {where} on the server: {exc}")
            chan.close()
            return
        except (OSError, ForwardError, ConnectError) as exc:
            target = asked[0].target if asked else _target_text(spec)
            self._connection_failed(
                f"this machine could not connect to {target} for {spec}: {_why(exc)}"
            )
            with contextlib.suppress(OSError, EOFError):
                chan.close()
            return
        relay = Relay(sock, chan, self.counters, target_is_sock=True, to_sock=rest)
        self._relay(relay, where, target)


def _target_text(spec: ForwardSpec) -> str:
    if spec.target_path is not None:
        return spec.target_path
    return f"{spec.target_host}:{spec.target_port}"


def _why(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the name ({exc.strerror})"
    if isinstance(exc, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
