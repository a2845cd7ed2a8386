"""One live tunnel inside the engine: an SSH connection and the forwards it carries."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..config import ConnectSettings, Prompt
from ..connection import Connection
from ..errors import ForwardError
from ..forward.base import BaseForward
from ..forward.dynamic import DynamicForward
from ..forward.local import LocalForward
from ..forward.remote import RemoteForward
from ..spec import ForwardSpec
from ..status import State, TunnelSnapshot
from .pool import Pool

Emit = Callable[..., None]


class LiveTunnel:
    """Connects, starts every forward (all or nothing), and notices a lost connection."""

    def __init__(
        self,
        tunnel_id: int,
        destination: str,
        settings: ConnectSettings,
        forwards: tuple[ForwardSpec, ...],
        emit: Emit,
        pool: Pool,
        name: str = "",
        prompt: Prompt | None = None,
    ) -> None:
        self.id = tunnel_id
        self.name = name
        self.destination = destination
        self.settings = settings
        self.specs = forwards
        self.state: State = "starting"
        self.error: str | None = None
        self.started_at = time.time()
        self._emit = emit
        self._prompt = prompt
        # Where the SSH connection comes from: shared with other tunnels
        # of the same settings.
        self._pool = pool
        self._connection: Connection | None = None
        self._unwatch: Callable[[], None] | None = None
        self._forwards: list[BaseForward] = []
        self._stop_lock = threading.Lock()
        self._stopped = False

    def _event(self, kind: str, **data: object) -> None:
        self._emit(kind, tunnel=self.id, **data)

    def start(self) -> None:
        """Connect and start every forward; on any failure close everything and raise."""
        try:
            self._connection = self._pool.acquire(self.settings, self._prompt)
            self._unwatch = self._connection.on_lost(self._lost)
            for index, spec in enumerate(self.specs):
                forward = self._make(index, spec)
                self._forwards.append(forward)
                try:
                    forward.start()
                except ForwardError as exc:
                    # ExitOnForwardFailure yes (our default): one forward
                    # that cannot start fails the whole call, and the others
                    # are undone.  With "no", as ssh, the rest carry on.
                    if self.settings.exit_on_forward_failure:
                        raise
                    forward.state, forward.error = "failed", str(exc)
                    self._event("forward_failed", forward=index, error=str(exc))
        except BaseException as exc:
            self.state, self.error = "failed", str(exc)
            self._teardown()
            raise
        with self._stop_lock:
            self.state = "up"
        self._event("state", state="up")
        if not self._connection.is_active:
            self._lost()  # lost before we were "up" to notice

    def _make(self, index: int, spec: ForwardSpec) -> BaseForward:
        assert self._connection is not None
        if spec.kind == "remote":
            return RemoteForward(index, spec, self._connection, emit=self._event)
        cls = DynamicForward if spec.kind == "dynamic" else LocalForward
        return cls(
            index,
            spec,
            self._connection,
            gateway_ports=self.settings.gateway_ports,
            family=self.settings.address_family,
            emit=self._event,
        )

    def add(self, specs: tuple[ForwardSpec, ...]) -> None:
        """Start more forwards on the live connection, all or none of them."""
        # Under the stop lock: a stop() meanwhile would miss the new forwards.
        with self._stop_lock:
            if self._stopped or self.state != "up":
                raise ForwardError(
                    f"tunnel {self.id} is {self.state}; open a new one for these forwards"
                )
            started: list[BaseForward] = []
            try:
                for spec in specs:
                    forward = self._make(len(self._forwards) + len(started), spec)
                    forward.start()
                    started.append(forward)
            except BaseException:
                for forward in started:
                    forward.stop()
                raise
            self._forwards.extend(started)
            self.specs += specs
        for forward in started:
            self._event("forward_added", forward=forward.index, spec=str(forward.spec))

    def stop_forward(self, index: int) -> None:
        """Stop one forward (cancelled on the server for -R); the others carry on."""
        if not 0 <= index < len(self._forwards):
            raise ForwardError(
                f"tunnel {self.id} has no forward {index} "
                f"(it has {len(self._forwards)})"
            )
        forward = self._forwards[index]
        if forward.state == "stopped":
            return
        forward.stop()
        self._event("forward_stopped", forward=index)

    def _lost(self) -> None:
        # Reconnecting is a later step; for now a lost connection fails the
        # tunnel.
        with self._stop_lock:
            if self._stopped or self.state != "up":
                return  # a failing start() says so itself
            self.state = "failed"
        self.error = f"the SSH connection to {self.settings.target} was lost"
        for forward in self._forwards:
            forward.state, forward.error = "failed", self.error
        self._event("state", state="failed", error=self.error)

    def stop(self) -> None:
        """Close every forward and the connection, joining all threads. Idempotent."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        self._teardown()
        if self.state != "failed":
            self.state = "stopped"
        self._event("state", state=self.state)

    def _teardown(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
        for forward in self._forwards:
            forward.stop_accepting()
        connection, self._connection = self._connection, None
        if connection is not None:
            # The last user closes the connection, which wakes every thread
            # still waiting on it (a channel open can take 30 s), so the
            # joins below are quick; on a shared one, each forward cancels
            # what it holds (a -R on the server) and the rest carries on.
            self._pool.release(connection)
        for forward in self._forwards:
            forward.stop()

    def snapshot(self) -> TunnelSnapshot:
        return TunnelSnapshot(
            id=self.id,
            destination=self.destination,
            state=self.state,
            error=self.error,
            forwards=tuple(f.snapshot() for f in self._forwards),
            started_at=self.started_at,
            name=self.name,
        )
