"""Shared SSH connections: one per destination and credentials, as ControlMaster.

A second tunnel to the same place with the same settings rides the live
connection instead of logging in again; the connection closes when the
last tunnel using it lets go.
"""

from __future__ import annotations

import threading

from ..config import ConnectSettings, Prompt
from ..connection import Connection


class Pool:
    """Live connections by their settings, each counted by its users."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[ConnectSettings, Connection] = {}
        self._users: dict[Connection, int] = {}
        # One connect at a time per destination: a second caller waits for
        # the first login and then shares it instead of logging in too.
        self._connecting: dict[ConnectSettings, threading.Lock] = {}

    def acquire(self, settings: ConnectSettings, prompt: Prompt | None) -> Connection:
        """A connected Connection for ``settings``: a live one, or a new one.

        Raises what Connection.connect() raises; nothing is kept then.
        """
        with self._lock:
            gate = self._connecting.setdefault(settings, threading.Lock())
        with gate:
            with self._lock:
                live = self._live.get(settings)
                if live is not None and live.is_active:
                    self._users[live] += 1
                    return live
            connection = Connection(settings, prompt)
            connection.connect()
            with self._lock:
                self._live[settings] = connection
                self._users[connection] = 1
            return connection

    def release(self, connection: Connection) -> None:
        """One user less; the last one closes the connection."""
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
