"""Local forwards (ssh -L): listen here, open a channel to the target per connection.

Each accepted client goes through the forward's admission (``admission``):
no thread of its own until its channel is open, a bounded number of opens
in flight, and a client that has already given up dropped without one.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from typing import Any, Protocol

from ..errors import ForwardError
from ..grammar.forwards import ForwardSpec
from ..platform import limits, sockets
from .accept import refuse
from .admission import LIMIT, Admission
from .arrival import Arrival, Opening, Stage, describe
from .base import EventSink, RunningForward
from .listener import Family, Listener
from .owner import Mode, OwnerOnly
from .relay import Channel, Relay

# paramiko waits an hour for a channel by default.  A target that drops
# SYNs keeps sshd trying for about two minutes; we give up sooner so the
# local client is not left hanging without a word.
CHANNEL_OPEN_TIMEOUT = 30.0

logger = logging.getLogger("nbtunnel.forward")


class ChannelOpener(Protocol):
    """What local and dynamic forwards need of the SSH connection.

    The ``_async`` opens return at once; ``on_done`` gets the channel or
    the error (ForwardError, ConnectError) from another thread and must
    not block; the caller gives up (``give_up()``) at its deadline.
    """

    def open_tcpip(
        self, host: str, port: int, origin: tuple[str, int], timeout: float
    ) -> Channel: ...

    def open_streamlocal(self, path: str, timeout: float) -> Channel: ...

    def open_tcpip_async(
        self,
        host: str,
        port: int,
        origin: tuple[str, int],
        timeout: float,
        on_done: Any,
    ) -> Opening: ...

    def open_streamlocal_async(
        self, path: str, timeout: float, on_done: Any
    ) -> Opening: ...


def origin_of(sock: socket.socket) -> tuple[str, int]:
    """The accepted client's address, as a channel's originator field wants it."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = sock.getpeername()
        return (str(peer[0]), int(peer[1]))
    return ("127.0.0.1", 0)  # a unix-socket client has no address to report


class Client(Arrival):
    """A client of a listening forward, from its accept to its relay.

    Counted open from its accept (``counters.opened()`` by the forward) to
    its end: closed exactly once here, or by its relay's thread.
    """

    def __init__(
        self, forward: ListeningForward, sock: socket.socket, deadline: float
    ) -> None:
        self.src = origin_of(sock)  # raises OSError for a client already gone
        super().__init__(sock, deadline)
        self.forward = forward
        self.origin = f"{self.src[0]}:{self.src[1]}"
        self._over = False

    def end(self, why: str | None = None) -> None:
        if self._close() and why:
            # Not a failure: the client gave up before its channel opened.
            logger.debug("%s: dropped %s (%s)", self.forward.spec, self.origin, why)

    def fail(self, why: str) -> None:
        if not self._over:
            self.forward._connection_failed(why)
        self._close()

    def _close(self) -> bool:
        if self._over:
            return False
        self._over = True
        with contextlib.suppress(OSError):
            self.sock.close()
        self.forward.counters.closed()
        return True

    def carry(
        self, chan: Channel, target: str, *, to_sock: bytes = b"", to_chan: bytes = b""
    ) -> None:
        """Hand the client and its channel to a relay in a thread of its own
        (``to_sock`` and ``to_chan``: what goes out first, as Relay says)."""
        forward = self.forward
        relayed = Relay(
            self.sock, chan, forward.counters, to_sock=to_sock, to_chan=to_chan
        )
        self._over = True  # from now on the relay's thread ends it
        self.sock.setblocking(True)

        def refuse() -> None:
            with contextlib.suppress(Exception):
                chan.close()
            with contextlib.suppress(OSError):
                self.sock.close()
            forward.counters.closed()

        forward._spawn(forward._carry, relayed, self.origin, target, refuse=refuse)


class ListeningForward(RunningForward):
    """A forward whose connections arrive at a listener on this machine (-L, -D)."""

    KIND = ""  # the spec kind a subclass serves

    def __init__(
        self,
        index: int,
        spec: ForwardSpec,
        connection: ChannelOpener,
        *,
        gateway_ports: bool = False,
        family: Family = "any",
        owner_only: Mode = "auto",
        reuse_port: bool = False,
        emit: EventSink | None = None,
    ) -> None:
        if spec.kind != self.KIND:
            raise ValueError(f"not a {self.KIND} forward: {spec}")
        super().__init__(index, spec, emit)
        self._connection = connection
        self._owner_mode: Mode = owner_only
        self._owner = OwnerOnly("no", None)  # decided once bound
        self._listener = Listener(
            host=spec.listen_host,
            port=spec.listen_port,
            path=spec.listen_path,
            gateway_ports=gateway_ports,
            family=family,
            shared=reuse_port,
        )
        self._admission = Admission(f"{spec.flag}{index}")

    @property
    def connection(self) -> ChannelOpener:
        return self._connection

    @property
    def listen_host(self) -> str | None:
        return self._listener.listen_host

    @property
    def listen_port(self) -> int | None:
        return self._listener.listen_port

    def start(self) -> None:
        """Bind and start accepting; raises ForwardError if the bind fails."""
        self._listener.bind()
        addresses = self._listener.listen_addresses
        try:
            self._owner = OwnerOnly(
                self._owner_mode, None if self.spec.listen_path else addresses
            )
        except ForwardError:
            self._listener.close()
            raise
        if self._owner.note is not None or self._listener.warning is not None:
            self.note = self._owner.note or self._listener.warning
        try:
            self._admission.start()
        except (OSError, RuntimeError) as exc:
            self._listener.close()
            why = limits.shortage(exc) or exc
            raise ForwardError(f"cannot serve {self.spec}: {why}") from None
        try:
            self._listener.start(self._accepted, self._connection_failed)
        except BaseException:
            self._admission.stop()
            raise
        self.state = "up"

    def _accepted(self, sock: socket.socket, origin: str) -> None:
        # In the accept thread: hand the client on at once, never raise.
        refused = self._owner.refuses(sock, origin)
        if refused is not None:
            # Reset before anything reaches the target or the client.
            refuse(sock)
            if refused:  # not a client that is gone already
                self.counters.refused(refused)
                self.emit("connection_refused", error=refused)
            return
        self.counters.opened()
        try:
            client = self._client(sock)
        except OSError:
            # Gone while it waited to be accepted (a reset): nothing to say.
            with contextlib.suppress(OSError):
                sock.close()
            self.counters.closed()
            return
        except Exception as exc:  # noqa: BLE001 - one connection fails, not the forward
            with contextlib.suppress(OSError):
                sock.close()
            self._connection_failed(describe(exc))
            self.counters.closed()
            return
        if not self._admission.admit(client):
            client.end()  # stopping

    def _client(self, sock: socket.socket) -> Client:
        raise NotImplementedError

    def _close_listening(self) -> None:
        # The admission's thread is joined in stop(), once the tunnel has
        # closed the SSH connection: an open it is sending may wait on that.
        self._listener.close()
        self._admission.stopping()

    def stop(self) -> None:
        super().stop()
        self._admission.stop()


class LocalClient(Client):
    """A client of ``-L``: opened as soon as there is room, unless it has gone."""

    forward: LocalForward

    def gone(self) -> str | None:
        return sockets.client_gone(self.sock)

    def open(self, on_done: Any) -> Opening:
        spec, connection = self.forward.spec, self.forward.connection
        left = max(self.deadline - time.monotonic(), 0.001)
        if spec.target_path is not None:
            return connection.open_streamlocal_async(spec.target_path, left, on_done)
        assert spec.target_host is not None and spec.target_port is not None
        host, port = spec.target_host, spec.target_port
        return connection.open_tcpip_async(host, port, self.src, left, on_done)

    def opened(self, chan: Any) -> None:
        self.carry(chan, self.forward.target)

    def expired(self, stage: Stage) -> None:
        why = (
            f"the server did not connect to {self.forward.where} within "
            f"{CHANNEL_OPEN_TIMEOUT:g} s"
        )
        if stage == "queued":
            why += f" (it waited behind {LIMIT} opens in flight)"
        self.fail(why)


class LocalForward(ListeningForward):
    """Same as ``ssh -L``: connections to a local port reach a target the server can reach."""

    KIND = "local"

    @property
    def target(self) -> str:
        """The target as events name it."""
        spec = self.spec
        if spec.target_path is not None:
            return spec.target_path
        return f"{spec.target_host}:{spec.target_port}"

    @property
    def where(self) -> str:
        """The target as error messages name it."""
        spec = self.spec
        if spec.target_path is not None:
            return f"the unix socket {spec.target_path}"
        host = spec.target_host or ""
        return f"[{host}]:{spec.target_port}" if ":" in host else self.target

    def _client(self, sock: socket.socket) -> Client:
        return LocalClient(self, sock, time.monotonic() + CHANNEL_OPEN_TIMEOUT)
