"""Dynamic forwards (ssh -D): a SOCKS proxy here whose connections leave from the server."""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from ..errors import ConnectError, ForwardError
from .local import CHANNEL_OPEN_TIMEOUT, ListeningForward, origin_of
from .relay import Channel, Relay
from .socks import Handshake, Reason, Request, SocksError

# A client that connects and says nothing, or dribbles its handshake a byte
# at a time, must not hold a thread for ever: the whole handshake gets this long.
HANDSHAKE_TIMEOUT = 30.0

T = TypeVar("T")


class Stream(Protocol):
    """A socket or an SSH channel: what the SOCKS handshake reads and answers on."""

    def recv(self, nbytes: int) -> bytes: ...
    def sendall(self, data: bytes) -> None: ...
    def settimeout(self, timeout: float | None) -> None: ...


def negotiate(
    stream: Stream, connect: Callable[[Request], T]
) -> tuple[T, Request, bytes]:
    """Answer a SOCKS client on ``stream`` and connect where it asks.

    Returns what ``connect(request)`` returned, the request, and the bytes
    the client sent after it.  A bad handshake raises SocksError and a
    failed connect re-raises; either way the client was told why in its
    protocol's words, and the caller closes the stream.
    """
    handshake = Handshake()
    # One deadline for the whole handshake, not a timeout per read, which a
    # byte every few seconds would reset for hours.
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT
    while handshake.request is None:
        try:
            stream.settimeout(max(deadline - time.monotonic(), 0.001))
            data = stream.recv(4096)
        except TimeoutError:
            raise SocksError(
                f"no complete SOCKS request within {HANDSHAKE_TIMEOUT:g} s",
                b"",
                "general",
            ) from None
        if not data:
            raise SocksError("the client closed before its request", b"", "general")
        try:
            answer = handshake.feed(data)
        except SocksError as exc:
            if exc.reply:
                stream.sendall(exc.reply)
            raise
        if answer:
            stream.sendall(answer)
    request = handshake.request
    try:
        result = connect(request)
    except (ForwardError, ConnectError, OSError) as exc:
        stream.sendall(handshake.failure(reason_for(exc)))
        raise
    stream.sendall(handshake.success())
    stream.settimeout(None)
    return result, request, handshake.rest


_ERRNO_REASONS: dict[int, Reason] = {
    errno.ECONNREFUSED: "refused",
    errno.ENETUNREACH: "network_unreachable",
    errno.EHOSTUNREACH: "host_unreachable",
    errno.ETIMEDOUT: "host_unreachable",
}

# OpenSSH's sshd refuses a direct-tcpip channel with strerror() or
# gai_strerror() as its words; these pick the SOCKS reply from them.
_WORD_REASONS: tuple[tuple[str, Reason], ...] = (
    ("refused", "refused"),
    ("network is unreachable", "network_unreachable"),
    ("no route", "host_unreachable"),
    ("host is unreachable", "host_unreachable"),
    ("name or service", "host_unreachable"),
    ("not known", "host_unreachable"),
    ("name resolution", "host_unreachable"),
    ("no address", "host_unreachable"),
    ("timed out", "host_unreachable"),
)


def reason_for(exc: BaseException) -> Reason:
    """The SOCKS reply for a failed connect, from the channel's or socket's error."""
    if isinstance(exc, ForwardError):
        if exc.code == 1:
            return "not_allowed"
        if exc.code == 0:
            return "host_unreachable"  # the server gave up connecting
        words = exc.detail.lower()
        return next((r for w, r in _WORD_REASONS if w in words), "general")
    if isinstance(exc, (socket.gaierror, TimeoutError)):
        return "host_unreachable"
    if isinstance(exc, OSError) and exc.errno in _ERRNO_REASONS:
        return _ERRNO_REASONS[exc.errno]
    return "general"


class DynamicForward(ListeningForward):
    """Same as ``ssh -D``: SOCKS4/4a/5 here; the server connects where the client asks."""

    KIND = "dynamic"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Clients still in their handshake: no relay yet that stop() could
        # abort, and their threads wait on them.
        self._handshaking: set[socket.socket] = set()

    def stop(self) -> None:
        self.stop_accepting()
        with self._lock:
            waiting = list(self._handshaking)
        # Wakes their recv(); a shutdown, not a close, so the fd stays valid
        # until the thread that owns it closes it.
        for sock in waiting:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        super().stop()

    def _handle(self, sock: socket.socket) -> None:
        src = origin_of(sock)
        origin = f"{src[0]}:{src[1]}"

        def connect(request: Request) -> Channel:
            return self._connection.open_tcpip(
                request.host, request.port, src, CHANNEL_OPEN_TIMEOUT
            )

        with self._lock:
            if self._stopping:
                sock.close()
                return
            self._handshaking.add(sock)
        try:
            try:
                chan, request, rest = negotiate(sock, connect)
            finally:
                with self._lock:
                    self._handshaking.discard(sock)
        except (SocksError, ForwardError, ConnectError) as exc:
            if not self._stopping:
                self._connection_failed(f"SOCKS client {origin}: {exc}")
            sock.close()
            return
        relay = Relay(sock, chan, self.counters, to_chan=rest)
        self._relay(relay, origin, request.target)
