"""One running tunnel inside the engine: an SSH connection, the forwards it
carries, and a new connection when that one drops."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..errors import ForwardError
from ..forward.base import RunningForward
from ..forward.dynamic import DynamicForward
from ..forward.local import LocalForward
from ..forward.remote import RemoteForward
from ..grammar.forwards import ForwardSpec
from ..settings.resolve import ConnectSettings, Prompt
from ..ssh.connection import Connection
from ..ssh.trace import QUIET, Trace
from ..status import State, TunnelSnapshot
from .link import Link
from .pool import Pool
from .reconnect import Reconnector

Emit = Callable[..., None]


class RunningTunnel:
    """Connects, starts every forward (all or nothing), and reconnects a lost connection.

    While it reconnects, local listeners stay bound (see :class:`Link`),
    remote forwards are asked for again until the server lets go of their
    ports, and states and events say what happened.  Nothing is asked of a
    person then: a login that would need one fails the tunnel with the reason.
    """

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
        trace: Trace = QUIET,
    ) -> None:
        self.id = tunnel_id
        self.name = name
        self.trace = trace  # its -v: the steps of its connections and forwards
        self.destination = destination
        self.settings = settings
        self.specs = forwards
        self.state: State = "starting"
        self.error: str | None = None
        self.started_at = time.time()
        self._emit = emit
        self._prompt = prompt
        # Where the SSH connection comes from (shared by equal settings).
        self._pool = pool
        # The forwards' view of the connection, which outlives each one.
        self._link = Link(settings.target, trace=trace)
        # The connection this tunnel holds a share of; None while it
        # reconnects (the reconnect thread owns the dead one then).
        self._connection: Connection | None = None
        self._unwatch: Callable[[], None] | None = None
        self._forwards: list[RunningForward] = []
        self._stop_lock = threading.Lock()
        self._stopped = False
        # Tries for a new connection each time this one is lost.
        self._reconnector = Reconnector(
            pool,
            settings,
            name=f"nbtunnel-reconnect-{tunnel_id}",
            restore=self._restore,
            fail=self._fail,
            event=self._event,
            trace=trace,
        )
        self._lost_at = 0.0

    def _event(self, kind: str, **data: object) -> None:
        self._emit(kind, tunnel=self.id, label=self.name or str(self.id), **data)

    def start(self) -> None:
        """Connect and start every forward; on any failure close everything and raise."""
        try:
            warn = lambda text: self._event("warning", message=text)  # noqa: E731
            connection = self._pool.acquire(
                self.settings, self._prompt, warn=warn, trace=self.trace
            )
            self._attach(connection)
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
                    forward.emit("forward_failed", error=str(exc))
        except BaseException as exc:
            self.state, self.error = "failed", str(exc)
            self._teardown()
            raise
        with self._stop_lock:
            self.state = "up"
        self._event("state", state="up")
        if not connection.is_active:
            self._lost(connection)  # lost before we were "up" to notice

    def _attach(self, connection: Connection) -> None:
        self._connection = connection
        self._link.up(connection)
        self._unwatch = connection.on_lost(lambda: self._lost(connection))

    def _make(
        self, index: int, spec: ForwardSpec, link: Link | None = None
    ) -> RunningForward:
        retry = self._reconnector.retry_wait  # a -R refused after a reconnect
        link = link or self._link
        return make_forward(index, spec, link, self.settings, self._event, retry)

    def add(self, specs: tuple[ForwardSpec, ...], trace: Trace | None = None) -> None:
        """Start more forwards on the live connection, all or none of them;
        their steps said in ``trace`` (the -v of the line that adds them)."""
        link = self._link if trace is None else self._link.seen_by(trace)
        # Under the stop lock: a stop() meanwhile would miss the new forwards.
        with self._stop_lock:
            if self._stopped or self.state != "up":
                raise ForwardError(
                    f"tunnel {self.id} is {self.state}; open a new one for these forwards"
                )
            started: list[RunningForward] = []
            try:
                for spec in specs:
                    index = len(self._forwards) + len(started)
                    forward = self._make(index, spec, link)
                    forward.start()
                    started.append(forward)
            except BaseException:
                for forward in started:
                    forward.stop()
                raise
            self._forwards.extend(started)
            self.specs += specs
        for forward in started:
            forward.emit("forward_added")

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
        forward.emit("forward_stopped")

    # -- losing the connection and getting a new one ------------------------

    def _lost(self, connection: Connection) -> None:
        with self._stop_lock:
            if (
                self._stopped
                or self.state != "up"
                or connection is not self._connection
            ):
                return  # a failing start() says so itself; or told already
            why = connection.lost_reason
            error = f"the SSH connection to {self.settings.target} was lost: {why}"
            self.error = error
            self._link.down(why)
            # Before the reconnect thread starts: it restores what is
            # marked reconnecting here.
            for forward in self._forwards:
                forward.connection_lost(why)
            if self.settings.reconnect:
                self.state = "reconnecting"
                self._connection = None
                self._lost_at = time.monotonic()
                self._reconnector.start(connection)
        if not self.settings.reconnect:
            self._fail(error + " (Reconnect no)")
            return
        self._event("state", state="reconnecting", error=error)

    def _restore(self, connection: Connection, tries: int) -> None:
        with self._stop_lock:
            if self._stopped:
                self._pool.release(connection, self.trace)
                return
            self._attach(connection)
        for forward in list(self._forwards):
            try:
                forward.restore()
            except ForwardError as exc:
                # The others carry on; this one says why it could not.
                forward.emit("forward_failed", error=str(exc))
        if not self._set_up():
            return
        seconds = round(time.monotonic() - self._lost_at, 3)
        self._event("reconnected", tries=tries, seconds=seconds)
        self._event("state", state="up")
        if not connection.is_active:
            self._lost(connection)  # lost again before its watch began

    def _set_up(self) -> bool:
        """Up again, unless stop() came first."""
        with self._stop_lock:
            if self._stopped:
                return False
            self.state, self.error = "up", None
            return True

    def _fail(self, why: str) -> None:
        with self._stop_lock:
            if self._stopped:
                return
            self.state, self.error = "failed", why
        # New connections to what still listens here are refused at once.
        self._link.close(why)
        for forward in self._forwards:
            if forward.state in ("up", "reconnecting"):
                forward.state, forward.error = "failed", why
        self._event("state", state="failed", error=why)

    # -- stopping -------------------------------------------------------------

    def stop(self) -> None:
        """Close every forward and the connection, joining all threads. Idempotent."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        self._reconnector.halt()
        self._teardown()
        if self.state != "failed":
            self.state = "stopped"
        self._event("state", state=self.state)

    def _teardown(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
        for forward in self._forwards:
            forward.stop_accepting()
        # After the -R cancels went out over it; wakes a connection that
        # waits for the SSH connection to come back.
        self._link.close("the tunnel is stopped")
        connection, self._connection = self._connection, None
        if connection is not None:
            # The last user closes the connection, which wakes every thread
            # still waiting on it (a channel open can take 30 s), so the
            # joins below are quick; on a shared one, each forward cancels
            # what it holds (a -R on the server) and the rest carries on.
            self._pool.release(connection, self.trace)
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


def make_forward(
    index: int,
    spec: ForwardSpec,
    link: Link,
    settings: ConnectSettings,
    emit: Emit,
    retry: Callable[[int], float | None],
) -> RunningForward:
    """The forward of ``spec`` on a tunnel's link (not started)."""
    if spec.kind == "remote":
        return RemoteForward(index, spec, link, emit=emit, retry=retry)
    cls = DynamicForward if spec.kind == "dynamic" else LocalForward
    return cls(
        index,
        spec,
        link,
        gateway_ports=settings.gateway_ports,
        family=settings.address_family,
        owner_only=settings.owner_only,
        reuse_port=settings.reuse_port,
        emit=emit,
    )
