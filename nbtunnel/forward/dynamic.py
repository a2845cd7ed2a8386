"""Dynamic forwards (ssh -D): a SOCKS proxy here whose connections leave from the server."""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from ..errors import ConnectError, ForwardError
from ..platform import sockets
from .arrival import Failed, Opening, Stage, describe
from .local import CHANNEL_OPEN_TIMEOUT, Client, ListeningForward
from .socks import Handshake, Reason, Request, SocksError

# A client that connects and says nothing, or dribbles its handshake a byte
# at a time, must not hold its socket for ever: the whole handshake gets this
# long (the -D proxy's handshakes are read without a thread each; negotiate()
# below, the one a -R SOCKS forward runs on a channel, blocks).
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


class SocksClient(Client):
    """A client of ``-D``: its handshake read as it arrives, then opened
    where it asks (unless it reset meanwhile), then answered."""

    reads = True
    forward: DynamicForward

    def __init__(self, forward: DynamicForward, sock: socket.socket) -> None:
        # One deadline for the whole handshake, not a timeout per read,
        # which a byte every few seconds would reset for hours.
        self.handshake_timeout = HANDSHAKE_TIMEOUT
        super().__init__(forward, sock, time.monotonic() + self.handshake_timeout)
        self.handshake = Handshake()

    def read(self) -> bool:
        data = self.sock.recv(4096)
        if not data:
            raise Failed("the client closed before its request")
        try:
            answer = self.handshake.feed(data)
        except SocksError as exc:
            if exc.reply:
                self._tell(exc.reply)
            raise Failed(str(exc)) from None
        if answer and self.sock.send(answer) < len(answer):
            raise Failed("the client does not read its replies")
        if self.handshake.request is None:
            return False
        self.deadline = time.monotonic() + CHANNEL_OPEN_TIMEOUT
        return True

    def gone(self) -> str | None:
        # It has spoken (its request): an end of file now is a half-close.
        return sockets.client_gone(self.sock, spoke=True)

    def open(self, on_done: Any) -> Opening:
        request = self.handshake.request
        assert request is not None
        left = max(self.deadline - time.monotonic(), 0.001)
        connection = self.forward.connection
        return connection.open_tcpip_async(
            request.host, request.port, self.src, left, on_done
        )

    def opened(self, chan: Any) -> None:
        request = self.handshake.request
        assert request is not None
        # The reply is ours, not the target's bytes: sent here (ten bytes,
        # into a socket the client has read everything else from).
        success = self.handshake.success()
        try:
            sent = self.sock.send(success)
        except OSError:
            sent = 0
        if sent < len(success):
            with contextlib.suppress(Exception):
                chan.close()
            self.end()  # the client went away, or does not read
            return
        self.carry(chan, request.target, to_chan=self.handshake.rest)

    def refused(self, error: BaseException) -> None:
        self._tell(self.handshake.failure(reason_for(error)))
        self.fail(describe(error))

    def expired(self, stage: Stage) -> None:
        request = self.handshake.request
        if request is None:
            self.fail(f"no complete SOCKS request within {self.handshake_timeout:g} s")
            return
        self._tell(self.handshake.failure("host_unreachable"))
        self.fail(
            f"the server did not connect to {request.target} within "
            f"{CHANNEL_OPEN_TIMEOUT:g} s"
        )

    def fail(self, why: str) -> None:
        super().fail(f"SOCKS client {self.origin}: {why}")

    def _tell(self, reply: bytes) -> None:
        """Send a last reply if the client's buffer takes it (it is closed next)."""
        with contextlib.suppress(OSError):
            self.sock.send(reply)


class DynamicForward(ListeningForward):
    """Same as ``ssh -D``: SOCKS4/4a/5 here; the server connects where the client asks."""

    KIND = "dynamic"

    def _client(self, sock: socket.socket) -> Client:
        return SocksClient(self, sock)
