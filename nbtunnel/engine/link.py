"""A tunnel's SSH connection as its forwards see it: one that may drop and come back.

Forwards hold the link, never a connection: while the tunnel reconnects,
the local listeners stay bound, and a connection arriving meanwhile waits
for the new SSH connection (briefly) instead of finding a dead one.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

from ..errors import ConnectError, TunnelError
from ..ssh.connection import Connection
from ..ssh.opens import Done, Opening, Threaded
from ..ssh.remote import RemoteListener
from ..ssh.trace import QUIET, Trace

# How long a connection made during an outage waits for the SSH connection
# to come back before it is closed: long enough for a restarted server, short
# enough that a client's own timeout is not what ends it.
OUTAGE_WAIT = 10.0


class _State:
    """The connection a tunnel's link has now, shared by its views."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.connection: Connection | None = None
        self.why = "it is not connected yet"
        self.closed = False


class Link:
    """The current Connection of one tunnel, or the outage it is in."""

    def __init__(
        self, target: str, outage_wait: float = OUTAGE_WAIT, trace: Trace = QUIET
    ) -> None:
        self._target = target
        self._outage_wait = outage_wait
        # The tunnel's -v: what its forwards ask of the server, and the answers.
        self._trace = trace
        self._state = _State()

    def seen_by(self, trace: Trace) -> Link:
        """The same link (the same connection, outages and close), its steps
        said in ``trace``: for forwards a later line added, with its -v."""
        view = copy.copy(self)
        view._trace = trace
        return view

    def up(self, connection: Connection) -> None:
        with self._state.changed:
            self._state.connection = connection
            self._state.changed.notify_all()

    def down(self, why: str) -> None:
        with self._state.changed:
            self._state.connection = None
            self._state.why = why

    def close(self, why: str) -> None:
        """No connection from now on; whoever waits gives up at once."""
        with self._state.changed:
            self._state.connection = None
            self._state.why = why
            self._state.closed = True
            self._state.changed.notify_all()

    def _current(self, wait: float) -> Connection:
        with self._state.changed:
            self._state.changed.wait_for(
                lambda: self._state.connection is not None or self._state.closed, wait
            )
            if self._state.connection is None:
                raise ConnectError(
                    f"the SSH connection to {self._target} is down ({self._state.why})"
                    + ("" if self._state.closed else "; nbtunnel is reconnecting")
                )
            return self._state.connection

    # -- what forwards ask of a connection ----------------------------------

    def _opening(self, where: str, origin: tuple[str, int] | None = None) -> None:
        if origin is not None:
            where += f" for {origin[0]} port {origin[1]}"
        self._trace(2, "channel open: %s", where)

    def _told(self, where: str, on_done: Done) -> Done:
        """``on_done``, saying first (at -vv) how the open of ``where`` ended."""

        def done(result: Any) -> None:
            if isinstance(result, BaseException):
                self._trace(2, "channel open to %s failed: %s", where, result)
            else:
                self._trace(2, "channel open to %s confirmed", where)
            on_done(result)

        return done

    def _waited(self, where: str, open_: Callable[[], Any]) -> Any:
        """``open_()``, saying (at -vv) how the open of ``where`` ended."""
        try:
            channel = open_()
        except TunnelError as exc:
            self._trace(2, "channel open to %s failed: %s", where, exc)
            raise
        self._trace(2, "channel open to %s confirmed", where)
        return channel

    def open_tcpip(
        self, host: str, port: int, origin: tuple[str, int], timeout: float
    ) -> Any:
        connection = self._current(self._outage_wait)
        if not self._trace.wants(2):
            return connection.open_tcpip(host, port, origin, timeout)
        self._opening(f"direct-tcpip to {host}:{port}", origin)
        return self._waited(
            f"{host}:{port}", lambda: connection.open_tcpip(host, port, origin, timeout)
        )

    def open_streamlocal(self, path: str, timeout: float) -> Any:
        connection = self._current(self._outage_wait)
        if not self._trace.wants(2):
            return connection.open_streamlocal(path, timeout)
        self._opening(f"direct-streamlocal to {path}")
        return self._waited(path, lambda: connection.open_streamlocal(path, timeout))

    # Without waiting (a forward keeps many in flight, no thread on any): on
    # the live connection; during an outage, the wait above in a thread of
    # the open's own (the forward bounds how many are in flight).

    def open_tcpip_async(
        self,
        host: str,
        port: int,
        origin: tuple[str, int],
        timeout: float,
        on_done: Done,
    ) -> Opening:
        connection = self._now()
        if connection is not None:
            if self._trace.wants(2):  # (no words made per connection otherwise)
                self._opening(f"direct-tcpip to {host}:{port}", origin)
                on_done = self._told(f"{host}:{port}", on_done)
            return connection.open_tcpip_async(host, port, origin, timeout, on_done)
        call = lambda: self.open_tcpip(host, port, origin, timeout)  # noqa: E731
        return Threaded(call, on_done, "nbtunnel-open-outage")

    def open_streamlocal_async(
        self, path: str, timeout: float, on_done: Done
    ) -> Opening:
        connection = self._now()
        if connection is not None:
            if self._trace.wants(2):
                self._opening(f"direct-streamlocal to {path}")
                on_done = self._told(path, on_done)
            return connection.open_streamlocal_async(path, timeout, on_done)
        call = lambda: self.open_streamlocal(path, timeout)  # noqa: E731
        return Threaded(call, on_done, "nbtunnel-open-outage")

    def _now(self) -> Connection | None:
        """The connection, None during an outage; raises once closed for good."""
        with self._state.changed:
            if self._state.connection is None and self._state.closed:
                raise ConnectError(
                    f"the SSH connection to {self._target} is down ({self._state.why})"
                )
            return self._state.connection

    def listen_remote(
        self,
        address: str,
        port: int | None,
        handler: Callable[[Any, tuple[str, int]], None],
        refused: Callable[[str], None] | None = None,
    ) -> RemoteListener:
        connection, trace = self._current(0), self._trace
        asked = RemoteListener(address, port).text
        trace(1, "Requesting remote forward: the server to listen on %s", asked)
        if trace.wants(2):
            handler = self._arrivals(handler)
        try:
            granted = connection.listen_remote(address, port, handler, refused)
        except TunnelError as exc:
            trace(1, "Remote forward on %s refused: %s", asked, exc)
            raise
        trace(1, "remote forward success: the server listens on %s", granted.text)
        return granted

    def _arrivals(
        self, handler: Callable[[Any, tuple[str, int]], None]
    ) -> Callable[[Any, tuple[str, int]], None]:
        """``handler``, saying first (at -vv) each connection the server sends."""

        def told(channel: Any, origin: tuple[str, int]) -> None:
            self._trace(2, "channel from the server (-R): from %s port %d", *origin)
            handler(channel, origin)

        return told

    def cancel_remote(self, address: str, port: int | None) -> None:
        # During an outage there is nothing to cancel: the server closed
        # the listener with the old connection.
        connection = self._state.connection
        if connection is not None:
            connection.cancel_remote(address, port)
