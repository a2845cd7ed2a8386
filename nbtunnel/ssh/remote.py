"""A connection's remote forwards (``-R``): the server listens, and sends each
connection made there back as a channel, routed to its forward.

paramiko keeps one reply slot for global requests and one handler for
every incoming forwarded channel: :class:`Remotes` serialises the requests
and routes each channel by the address the server reports.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import paramiko

from .._paramiko.transport import CANCEL_REQUEST, STREAMLOCAL_PORT, Transport
from ..errors import ForwardError
from .printable import escaped

# Called with each channel the server opens for a remote forward and the
# (address, port) it came from, in a thread of its own.
IncomingHandler = Callable[[paramiko.Channel, tuple[str, int]], None]
T = TypeVar("T")


@dataclass(frozen=True)
class RemoteListener:
    """What a remote forward asked the server to listen on.

    ``port`` is None for a unix socket, whose path is then ``address``; for
    TCP it is the port the server bound (allocated by it if 0 was asked).
    """

    address: str
    port: int | None

    @property
    def text(self) -> str:
        if self.port is None:
            return self.address
        host = self.address or "*"
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @property
    def _key(self) -> tuple[str, int]:
        return (
            self.address,
            STREAMLOCAL_PORT if self.port is None else self.port,
        )


class Remotes:
    """The remote forwards of a Connection, which provides ``_live()`` (its
    transport, or ConnectError), ``_transport`` and ``timeout``."""

    _transport: Transport | None

    def _live(self) -> Transport:
        raise NotImplementedError

    @property
    def timeout(self) -> float:
        raise NotImplementedError

    def __init__(self) -> None:
        # Held by each request to the server, and while routing a channel.
        self._remote_lock = threading.Lock()
        self._remote: dict[tuple[str, int], IncomingHandler] = {}
        self._refused: dict[tuple[str, int], Callable[[str], None]] = {}

    def listen_remote(
        self,
        address: str,
        port: int | None,
        handler: IncomingHandler,
        refused: Callable[[str], None] | None = None,
    ) -> RemoteListener:
        """Ask the server to listen (``tcpip-forward``, or for a unix socket
        ``streamlocal-forward``: ``port`` None and ``address`` the path).

        ``handler(channel, origin)`` then runs in a thread of its own for each
        connection made there (``refused(why)`` when none could be started).
        Raises ForwardError if the server refuses.
        """
        t = self._live()
        with self._remote_lock:
            try:
                if port is None:
                    granted = t.forward_streamlocal(address, self.timeout)
                    listener = RemoteListener(address, None)
                else:
                    bound = t.forward_tcp(address, port, self.timeout)
                    granted = bound is not None
                    listener = RemoteListener(address, bound)
            except TimeoutError:
                where = RemoteListener(address, port).text
                raise ForwardError(
                    f"the server did not answer the request to listen on {where} "
                    f"(-R) within {self.timeout:g} s"
                ) from None
            if not granted:
                self._live()  # a lost connection is said as such
                raise ForwardError(_refusal(address, port))
            # Registered before the lock is released: a connection arriving
            # right after the reply waits in _route() for it.
            self._remote[listener._key] = handler
            if refused is not None:
                self._refused[listener._key] = refused
        return listener

    def cancel_remote(self, address: str, port: int | None) -> None:
        """Stop routing what listen_remote() set up, and ask the server to close it.

        Sent without waiting for the reply: stopping must not hang on a
        server that no longer answers.
        """
        listener = RemoteListener(address, port)
        with self._remote_lock:
            self._remote.pop(listener._key, None)
            self._refused.pop(listener._key, None)
            t = self._transport
            if t is None or not t.is_active():
                return  # the server closed it with the connection
            if listener.port is None:
                t.global_request(CANCEL_REQUEST, (address,), wait=False)
            else:
                t.global_request("cancel-tcpip-forward", (address, port), wait=False)

    def _incoming(
        self,
        chan: paramiko.Channel,
        origin: tuple[str, int],
        server: tuple[str, int],
    ) -> None:
        # Runs in paramiko's transport thread, which must never wait: every
        # channel's data passes through it.  The origin is the server's
        # word, quoted in the forward's messages: escaped.
        origin = (escaped(origin[0]), origin[1])
        try:
            threading.Thread(
                target=self._route,
                args=(chan, origin, server),
                name=f"nbtunnel-remote-{server[1]}",
                daemon=True,
            ).start()
        except RuntimeError as exc:
            # Raised here, it would end paramiko's thread: the SSH connection.
            # (A read without the lock, which a request to the server holds.)
            _refuse(chan, _by_port(self._refused, server), exc)

    def _route(
        self,
        chan: paramiko.Channel,
        origin: tuple[str, int],
        server: tuple[str, int],
    ) -> None:
        with self._remote_lock:
            handler = _by_port(self._remote, server)
        if handler is None:
            chan.close()
            return
        handler(chan, origin)


def _by_port(table: dict[tuple[str, int], T], server: tuple[str, int]) -> T | None:
    """What ``table`` holds for the listener the server reports a connection on."""
    found = table.get(server)
    if found is None:
        # The server may report the address in another spelling than was
        # asked ("" for "*", say); the port still decides.
        same_port = [v for (_, p), v in list(table.items()) if p == server[1]]
        found = same_port[0] if len(same_port) == 1 else None
    return found


def _refuse(
    chan: paramiko.Channel, refused: Callable[[str], None] | None, exc: RuntimeError
) -> None:
    """No thread for an incoming -R connection (a process limit): that one is
    closed and counted on its forward, which serves on."""
    with contextlib.suppress(OSError, EOFError):
        chan.close()
    if refused is not None:
        refused(
            f"could not start a thread for this connection: {exc} (a process limit?)"
        )


def _refusal(address: str, port: int | None) -> str:
    # SSH_MSG_REQUEST_FAILURE carries no reason, so name the usual ones.
    if port is None:
        return (
            f"the server refused to listen on the unix socket {address} (-R): "
            "the file may exist already (sshd replaces it only with "
            "StreamLocalBindUnlink yes), its directory may not be writable "
            "by the login user, or AllowStreamLocalForwarding forbids it"
        )
    where = RemoteListener(address, port).text
    low = (
        "; only root may listen on ports below 1024 on that machine, use 0 for "
        "any free port"
        if 0 < port < 1024
        else ""
    )
    return (
        f"the server refused to listen on {where} (-R): the port may be in use "
        "there, or its sshd_config forbids it (AllowTcpForwarding, PermitListen)" + low
    )
