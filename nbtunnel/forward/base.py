"""What every kind of forward shares: counters, state, its connections' threads and relays."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..grammar.forwards import ForwardSpec
from ..status import Counters, ForwardSnapshot, State
from .arrival import thread_failure
from .relay import Relay

EventSink = Callable[..., None]


class RunningForward:
    """One forward's bookkeeping; subclasses say where connections come from and go.

    Every thread serving one of its connections is tracked so that stop()
    can abort their relays and join them: nothing outlives a stopped forward.
    """

    def __init__(self, index: int, spec: ForwardSpec, emit: EventSink | None) -> None:
        self.index = index
        self.spec = spec
        self.counters = Counters()
        self.state: State = "starting"
        self.error: str | None = None
        # Said in displays: e.g. that the server decides how wide -R binds.
        self.note: str | None = None
        self._sink = emit
        self._lock = threading.Lock()
        self._relays: set[Relay] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping = False

    def emit(self, kind: str, **data: Any) -> None:
        """Send an event of this forward, which names it by its index and,
        as the tables do, by its spec."""
        if self._sink is not None:
            self._sink(kind, forward=self.index, spec=str(self.spec), **data)

    # -- where it listens (subclasses) --------------------------------------

    @property
    def listen_host(self) -> str | None:
        return self.spec.listen_host

    @property
    def listen_port(self) -> int | None:
        return self.spec.listen_port

    @property
    def listen_path(self) -> str | None:
        return self.spec.listen_path

    def start(self) -> None:
        """Start listening (here or on the server); raises ForwardError if it cannot."""
        raise NotImplementedError

    def _close_listening(self) -> None:
        """Stop new connections arriving (close the listener, cancel on the server)."""
        raise NotImplementedError

    # -- connections ----------------------------------------------------------

    def _spawn(
        self, work: Callable[..., None], *args: Any, refuse: Callable[[], None]
    ) -> None:
        """Run ``work(*args)`` in a new tracked thread.

        ``refuse()`` instead if stopping, or if the thread cannot start (a
        pids limit, say), which is then counted and said: that connection
        ends, the forward serves on.
        """
        thread = threading.Thread(
            target=self._tracked,
            args=(work, *args),
            name=f"nbtunnel-conn-{self.spec.flag}{self.index}",
            daemon=True,
        )
        failed: RuntimeError | None = None
        with self._lock:
            stopping = self._stopping
            if not stopping:
                # Started under the lock: stop() joins only started threads.
                try:
                    thread.start()
                except RuntimeError as exc:
                    failed = exc
                else:
                    self._threads.add(thread)
        if failed is not None:
            self._connection_failed(thread_failure(failed))
        if stopping or failed is not None:
            refuse()

    def _tracked(self, work: Callable[..., None], *args: Any) -> None:
        try:
            work(*args)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _carry(self, relay: Relay, origin: str, target: str) -> None:
        """A relay thread's work: the connection, counted open since its
        accept, ends with it."""
        try:
            self._relay(relay, origin, target)
        finally:
            self.counters.closed()

    def _adopt(
        self, work: Callable[..., None], *args: Any, refuse: Callable[[], None]
    ) -> None:
        """Serve one connection in the calling thread, tracked (``refuse()`` if stopping)."""
        with self._lock:
            if self._stopping:
                refuse()
                return
            self._threads.add(threading.current_thread())
        self._serve(work, *args)

    def _serve(self, work: Callable[..., None], *args: Any) -> None:
        self.counters.opened()
        try:
            work(*args)
        finally:
            self.counters.closed()
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _connection_failed(self, error: str) -> None:
        # One failed connection is closed, counted and said; the forward
        # stays up for the next one.
        self.counters.failed(error)
        self.emit("connection_failed", error=error)

    def _relay(self, relay: Relay, origin: str, target: str) -> None:
        """Run ``relay`` to its end, announcing the connection and its totals."""
        with self._lock:
            if self._stopping:
                relay.abort()
            self._relays.add(relay)
        self.emit("connection", origin=origin, target=target)
        try:
            relay.run()
        finally:
            with self._lock:
                self._relays.discard(relay)
            self.emit(
                "connection_closed",
                origin=origin,
                target=target,
                sent=relay.sent,
                received=relay.received,
                error=relay.error,
            )

    # -- the SSH connection dropping and coming back -------------------------

    def connection_lost(self, why: str) -> None:
        """The SSH connection dropped: end the connections it carried.

        What listens here stays bound; the forward waits in ``reconnecting``
        for :meth:`restore`.
        """
        with self._lock:
            relays = list(self._relays)
        for relay in relays:
            relay.abort(f"the SSH connection was lost: {why}", reset=True)
        if self.state == "up":
            self.state = "reconnecting"

    def restore(self) -> None:
        """Serve again over a new SSH connection; raises ForwardError if it cannot."""
        if self.state == "reconnecting":
            self.state = "up"

    # -- stopping ---------------------------------------------------------------

    def stop_accepting(self) -> None:
        """No new connections; those already open carry on. Idempotent."""
        with self._lock:
            first = not self._stopping
            self._stopping = True
        if first:
            self._close_listening()

    def stop(self) -> None:
        """Stop accepting, abort every connection and join their threads. Idempotent."""
        self.stop_accepting()
        with self._lock:
            relays = list(self._relays)
            threads = list(self._threads)
        for relay in relays:
            relay.abort()
        current = threading.current_thread()
        for thread in threads:
            if thread is not current:
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
            listen_path=self.listen_path,
            target_host=spec.target_host,
            target_port=spec.target_port,
            target_path=spec.target_path,
            state=self.state,
            error=self.error,
            stats=self.counters.snapshot(),
            note=self.note,
        )
