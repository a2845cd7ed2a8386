"""Shared SSH connections: one per destination and credentials, as ControlMaster.

A second tunnel to the same place with the same settings rides the live
connection instead of logging in again; the connection closes when the
last tunnel using it lets go.  Each user's trace hears paramiko's log of
the connection (with -vvv) while it holds its share, and only then.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..errors import ConnectError
from ..settings.resolve import ConnectSettings, Prompt
from ..ssh.connection import Connection
from ..ssh.trace import QUIET, Trace


class Attempt:
    """A connect that another thread may give up on (a tunnel stopped while
    it reconnects): :meth:`cancel` ends the wait and the connect at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._connection: Connection | None = None

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            connection = self._connection
        if connection is not None:
            connection.abandon()

    def check(self) -> None:
        if self._cancelled:
            raise ConnectError("the connect was abandoned: the tunnel is stopping")

    def begin(self, connection: Connection) -> None:
        with self._lock:
            self.check()
            self._connection = connection

    def end(self) -> None:
        with self._lock:
            self._connection = None


class Pool:
    """Live connections by their settings, each counted by its users."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[ConnectSettings, Connection] = {}
        self._users: dict[Connection, int] = {}
        # One connect at a time per destination: a second caller waits for
        # the first login and then shares it instead of logging in too.
        self._connecting: dict[ConnectSettings, threading.Lock] = {}

    def acquire(
        self,
        settings: ConnectSettings,
        prompt: Prompt | None,
        attempt: Attempt | None = None,
        warn: Callable[[str], None] | None = None,
        trace: Trace = QUIET,
    ) -> Connection:
        """A connected Connection for ``settings``: a live one, or a new one.

        Raises what Connection.connect() raises; nothing is kept then.
        ``attempt`` lets another thread give up on the wait and the connect;
        ``warn(text)`` tells the caller what a new connect warns of, and
        ``trace`` its steps (for -v).
        """
        with self._lock:
            gate = self._connecting.setdefault(settings, threading.Lock())
        while not gate.acquire(timeout=0.2):
            if attempt is not None:
                attempt.check()
        try:
            with self._lock:
                live = self._live.get(settings)
                if live is not None and live.is_active:
                    self._users[live] += 1
                    trace(1, "Sharing the live SSH connection to %s", settings.target)
                    live.hear(trace)
                    return live
            connection = Connection(settings, prompt, warn=warn, trace=trace)
            if attempt is not None:
                attempt.begin(connection)
            try:
                connection.connect()
            finally:
                if attempt is not None:
                    attempt.end()
            with self._lock:
                self._live[settings] = connection
                self._users[connection] = 1
            return connection
        finally:
            gate.release()

    def release(self, connection: Connection, trace: Trace = QUIET) -> None:
        """One user less (the one with ``trace``, which it acquired with);
        the last one closes the connection."""
        connection.unhear(trace)
        with self._lock:
            left = self._users.get(connection, 1) - 1
            if left > 0:
                self._users[connection] = left
                return
            self._users.pop(connection, None)
            settings = connection.settings
            if self._live.get(settings) is connection:
                del self._live[settings]
        connection.close()
