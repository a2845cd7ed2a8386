"""The engine's events on the caller's side: logged, kept per tunnel, passed on.

Each tunnel keeps its latest lines ("reconnected after 0.4 s", "Allocated
port ...") for its display; events of an open still in flight wait for its
handle; subscribers (the CLI's event lines, say) get every event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from ..engine.client import EventHandler
from ..engine.protocol import Message
from . import display

logger = logging.getLogger("nbtunnel")
EVENTS_KEPT = 12
EARLY_KEPT = 16  # tunnels whose open has not returned (or failed)


class Events:
    """The engine client's event handler for one manager."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[EventHandler] = []
        self._kept: dict[int, deque[str]] = {}  # by tunnel id, while it has a handle
        self._early: dict[int, deque[str]] = {}

    def subscribe(self, callback: EventHandler) -> None:
        self._listeners.append(callback)

    def take(self, tunnel_id: int) -> deque[str]:
        """The events of a tunnel whose handle is being made, and every one after."""
        with self._lock:
            kept = self._early.pop(tunnel_id, None) or deque(maxlen=EVENTS_KEPT)
            self._kept[tunnel_id] = kept
            return kept

    def drop(self, tunnel_id: int) -> None:
        with self._lock:
            self._kept.pop(tunnel_id, None)

    def __call__(self, message: Message) -> None:
        if message.get("event") == "log":
            # Under "nbtunnel", whatever logged it in the engine (paramiko,
            # say): that logger has a NullHandler, so nothing is printed into
            # a notebook cell unless the user configures logging.
            origin = str(message.get("logger", "engine")).removeprefix("nbtunnel.")
            logging.getLogger(f"nbtunnel.engine.{origin}").log(
                int(message.get("level", logging.INFO)), "%s", message.get("message")
            )
        elif message.get("event") == "engine_exited":
            # The engine cannot log its own death: the log line is ours.
            logger.warning("%s", message.get("error"))
        else:
            logger.debug("engine event: %s", message)
            self._keep(message)
        for callback in list(self._listeners):
            try:
                callback(message)
            except Exception:
                logger.exception("nbtunnel event listener failed")

    def _keep(self, message: Message) -> None:
        line = display.event_line(message)
        tunnel_id = message.get("tunnel")
        if not line or not isinstance(tunnel_id, int):
            return
        with self._lock:
            # Events of an open still in flight ("Allocated port") wait for
            # its handle.
            kept = self._kept.get(tunnel_id)
            if kept is None:
                kept = self._early.setdefault(tunnel_id, deque(maxlen=EVENTS_KEPT))
            kept.append(f"{time.strftime('%H:%M:%S')} {line}")
            while len(self._early) > EARLY_KEPT:  # those of opens that failed
                self._early.pop(next(iter(self._early)))
