"""Local forwards (ssh -L): listen here, open a channel to the target per connection."""

from __future__ import annotations

import contextlib
import socket
from typing import Protocol

from ..errors import ConnectError, ForwardError
from ..grammar.forwards import ForwardSpec
from .base import EventSink, RunningForward
from .listener import Family, Listener
from .relay import Channel, Relay

# paramiko waits an hour for a channel by default.  A target that drops
# SYNs keeps sshd trying for about two minutes; we give up sooner so the
# local client is not left hanging without a word.
CHANNEL_OPEN_TIMEOUT = 30.0


class ChannelOpener(Protocol):
    """What local and dynamic forwards need of the SSH connection."""

    def open_tcpip(
        self, host: str, port: int, origin: tuple[str, int], timeout: float
    ) -> Channel: ...

    def open_streamlocal(self, path: str, timeout: float) -> Channel: ...


def origin_of(sock: socket.socket) -> tuple[str, int]:
    """The accepted client's address, as a channel's originator field wants it."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = sock.getpeername()
        return (str(peer[0]), int(peer[1]))
    return ("127.0.0.1", 0)  # a unix-socket client has no address to report


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
        emit: EventSink | None = None,
    ) -> None:
        if spec.kind != self.KIND:
            raise ValueError(f"not a {self.KIND} forward: {spec}")
        super().__init__(index, spec, emit)
        self._connection = connection
        self._listener = Listener(
            host=spec.listen_host,
            port=spec.listen_port,
            path=spec.listen_path,
            gateway_ports=gateway_ports,
            family=family,
        )

    @property
    def listen_host(self) -> str | None:
        return self._listener.listen_host

    @property
    def listen_port(self) -> int | None:
        return self._listener.listen_port

    def start(self) -> None:
        """Bind and start accepting; raises ForwardError if the bind fails."""
        self._listener.bind()
        self._listener.start(self._accepted)
        self.state = "up"

    def _accepted(self, sock: socket.socket, origin: str) -> None:
        self._spawn(self._guarded, sock, refuse=sock.close)

    def _guarded(self, sock: socket.socket) -> None:
        try:
            self._handle(sock)
        except OSError:
            with contextlib.suppress(OSError):
                sock.close()
        except Exception as exc:  # noqa: BLE001 - one connection fails, not the forward
            # What nobody expected (a bug, a paramiko changed under the
            # gate): this client is closed at once and the error counted.
            self._connection_failed(
                f"the connection failed unexpectedly: {type(exc).__name__}: {exc}"
            )
            with contextlib.suppress(OSError):
                sock.close()

    def _handle(self, sock: socket.socket) -> None:
        raise NotImplementedError

    def _close_listening(self) -> None:
        self._listener.close()


class LocalForward(ListeningForward):
    """Same as ``ssh -L``: connections to a local port reach a target the server can reach."""

    KIND = "local"

    def _handle(self, sock: socket.socket) -> None:
        spec = self.spec
        src = origin_of(sock)
        try:
            if spec.target_path is not None:
                target = spec.target_path
                chan = self._connection.open_streamlocal(
                    spec.target_path, CHANNEL_OPEN_TIMEOUT
                )
            else:
                assert spec.target_host is not None and spec.target_port is not None
                target = f"{spec.target_host}:{spec.target_port}"
                chan = self._connection.open_tcpip(
                    spec.target_host, spec.target_port, src, CHANNEL_OPEN_TIMEOUT
                )
        except (ForwardError, ConnectError) as exc:
            self._connection_failed(str(exc))
            sock.close()
            return
        self._relay(Relay(sock, chan, self.counters), f"{src[0]}:{src[1]}", target)
