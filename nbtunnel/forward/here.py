"""Where a -R connection goes: its target, reached from this machine.

The server hands each connection to its -R listener back to us over the
SSH connection; this connects it to the target here (TCP, a unix socket,
or wherever its SOCKS client asks for a remote ``-R PORT``), and words the
failure of one that cannot be reached.
"""

from __future__ import annotations

import socket
from typing import Any

from .._paramiko import ordered
from ..errors import ConnectError, ForwardError
from ..grammar.forwards import ForwardSpec
from ..grammar.hostnames import host_name_problem, invalid_host
from ..platform import sockets
from .dynamic import negotiate
from .socks import Request, SocksError

# How long this machine tries to reach a -R target before giving up on that
# one connection (the server's client is left waiting meanwhile).
CONNECT_TIMEOUT = 30.0


class Unreached(Exception):
    """A -R connection whose target could not be reached: why, in one line."""


def reach(spec: ForwardSpec, chan: Any, where: str) -> tuple[socket.socket, str, bytes]:
    """The target of ``spec`` for the channel ``chan`` (its client ``where``):
    the connected socket, the target's name, and bytes the client sent
    after a SOCKS handshake.  Raises :class:`Unreached`."""
    asked: list[Request] = []

    def connect(request: Request) -> socket.socket:
        asked.append(request)
        return connect_here(request.host, request.port)

    try:
        if spec.target_path is not None:
            return connect_unix(spec.target_path), spec.target_path, b""
        if spec.target_host is not None and spec.target_port is not None:
            sock = connect_here(spec.target_host, spec.target_port)
            return sock, target_text(spec), b""
        sock, request, rest = negotiate(_Ordered(chan), connect)
        return sock, request.target, rest
    except SocksError as exc:
        raise Unreached(f"SOCKS client {where} on the server: {exc}") from None
    except (OSError, ForwardError, ConnectError) as exc:
        target = asked[0].target if asked else target_text(spec)
        raise Unreached(
            f"this machine could not connect to {target} for {spec}: {_why(exc)}"
        ) from None


def connect_here(host: str, port: int) -> socket.socket:
    """Connect from this machine to a TCP target, for a -R forward."""
    try:
        sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    except UnicodeError as exc:
        # Python's idna codec refused the name (a remote -R SOCKS client's
        # request: a -R target's name was checked when it was parsed).
        problem = host_name_problem(host) or str(exc)
        raise ForwardError(invalid_host(host, problem)) from None
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def no_unix_sockets(path: str) -> ForwardError:
    return ForwardError(
        f"cannot connect to unix socket {path}: unix-socket forwards are not "
        "supported on this system (Windows); use a TCP port"
    )


def connect_unix(path: str) -> socket.socket:
    family = sockets.unix_family()
    if family is None:
        raise no_unix_sockets(path)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(path)
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    return sock


def target_text(spec: ForwardSpec) -> str:
    if spec.target_path is not None:
        return spec.target_path
    return f"{spec.target_host}:{spec.target_port}"


class _Ordered:
    """The channel as the SOCKS handshake uses it, its answers sent in
    order with a close (``_paramiko/ordered.py``): a failure answered as the
    client gives up must not reach sshd after the channel's CLOSE."""

    def __init__(self, chan: Any) -> None:
        self._chan = chan
        self._out = ordered.ordered(chan, batch=False) or chan

    def recv(self, nbytes: int) -> bytes:
        data: bytes = self._chan.recv(nbytes)
        return data

    def sendall(self, data: bytes) -> None:
        self._out.sendall(data)

    def settimeout(self, timeout: float | None) -> None:
        self._chan.settimeout(timeout)


def _why(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the name ({exc.strerror})"
    if isinstance(exc, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
