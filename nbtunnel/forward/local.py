"""Local forwards (ssh -L): listen here, open a direct-tcpip channel per connection."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Protocol

from ..errors import ConnectError, ForwardError
from ..spec import ForwardSpec
from ..status import Counters, ForwardSnapshot, State
from .listener import Family, Listener
from .pump import Channel, Relay

# paramiko waits an hour for a channel by default.  A target that drops
# SYNs keeps sshd trying for about two minutes; we give up sooner so the
# local client is not left hanging without a word.
CHANNEL_OPEN_TIMEOUT = 30.0

EventSink = Callable[..., None]


class ChannelOpener(Protocol):
    """What a local forward needs of the SSH connection."""

    def open_tcpip(
        self, host: str, port: int, origin: tuple[str, int], timeout: float
    ) -> Channel: ...


class LocalForward:
    """Same as ``ssh -L``: connections to a local port reach a target the server can reach."""

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
        if spec.kind != "local" or spec.target_host is None:
            raise ValueError(f"not a local forward to a TCP target: {spec}")
        self.index = index
        self.spec = spec
        self.counters = Counters()
        self.state: State = "starting"
        self.error: str | None = None
        self._connection = connection
        self._emit = emit or (lambda *a, **k: None)
        self._listener = Listener(
            host=spec.listen_host,
            port=spec.listen_port,
            path=spec.listen_path,
            gateway_ports=gateway_ports,
            family=family,
        )
        self._lock = threading.Lock()
        self._relays: set[Relay] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping = False

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
        thread = threading.Thread(
            target=self._serve,
            args=(sock, origin),
            name=f"nbtunnel-conn-{self.listen_port}",
            daemon=True,
        )
        with self._lock:
            if self._stopping:
                sock.close()
                return
            self._threads.add(thread)
        thread.start()

    def _serve(self, sock: socket.socket, origin: str) -> None:
        spec = self.spec
        assert spec.target_host is not None and spec.target_port is not None
        self.counters.opened()
        try:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                peer = sock.getpeername()
                src = (str(peer[0]), int(peer[1]))
            else:
                src = ("127.0.0.1", 0)
            try:
                chan = self._connection.open_tcpip(
                    spec.target_host, spec.target_port, src, CHANNEL_OPEN_TIMEOUT
                )
            except (ForwardError, ConnectError) as exc:
                # One failed connection: close it (as ssh does), record why,
                # and keep the forward up for the next one.
                self.counters.failed(str(exc))
                self._emit("connection_failed", forward=self.index, error=str(exc))
                sock.close()
                return
            relay = Relay(sock, chan, self.counters)
            with self._lock:
                if self._stopping:
                    relay.abort()
                self._relays.add(relay)
            origin_text = f"{src[0]}:{src[1]}"
            target = f"{spec.target_host}:{spec.target_port}"
            self._emit(
                "connection", forward=self.index, origin=origin_text, target=target
            )
            try:
                relay.run()
            finally:
                with self._lock:
                    self._relays.discard(relay)
                self._emit(
                    "connection_closed",
                    forward=self.index,
                    origin=origin_text,
                    target=target,
                    sent=relay.sent,
                    received=relay.received,
                    error=relay.error,
                )
        except OSError:
            with contextlib.suppress(OSError):
                sock.close()
        finally:
            self.counters.closed()
            with self._lock:
                self._threads.discard(threading.current_thread())

    def stop_accepting(self) -> None:
        """Close the listener; connections already open carry on. Idempotent."""
        with self._lock:
            self._stopping = True
        self._listener.close()

    def stop(self) -> None:
        """Close the listener and every connection, and join their threads. Idempotent."""
        self.stop_accepting()
        with self._lock:
            relays = list(self._relays)
            threads = list(self._threads)
        for relay in relays:
            relay.abort()
        for thread in threads:
            thread.join()
        if self.state != "failed":
            self.state = "stopped"

    def snapshot(self) -> ForwardSnapshot:
        spec = self.spec
        return ForwardSnapshot(
            index=self.index,
            spec=str(spec),
            kind=spec.kind,
            listen_host=self.listen_host,
            listen_port=self.listen_port,
            listen_path=spec.listen_path,
            target_host=spec.target_host,
            target_port=spec.target_port,
            target_path=spec.target_path,
            state=self.state,
            error=self.error,
            stats=self.counters.snapshot(),
        )
