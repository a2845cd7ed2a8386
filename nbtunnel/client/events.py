"""The engine's events on the caller's side: logged, kept per tunnel, passed on.

Each tunnel keeps its latest lines ("reconnected after 0.4 s", "Allocated
port ...") for its display; events of an open still in flight wait for its
handle; subscribers (the CLI's event lines, say) get every event.

A tunnel opened with ``-v`` sends its steps as ``log`` events with a
``verbosity``: they are logged under ``nbtunnel.engine.verbose`` (paramiko's
of -vvv under ``nbtunnel.engine.paramiko``), at INFO for -v and DEBUG for
more, each record carrying ``tunnel``, ``tunnel_name`` and ``verbosity``;
whoever :meth:`Events.watch` es the tunnel by name gets them as well.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ..engine.client import EventHandler
from ..engine.protocol import Message
from . import display

logger = logging.getLogger("nbtunnel")
EVENTS_KEPT = 12
EARLY_KEPT = 16  # tunnels whose open has not returned (or failed)


def verbose_line(message: Mapping[str, Any]) -> str | None:
    """A tunnel's -v line as ssh prints it (``debug1: ...``); None for any
    other event."""
    if message.get("event") != "log" or "verbosity" not in message:
        return None
    return f"debug{message['verbosity']}: {message.get('message')}"


class Events:
    """The engine client's event handler for one manager."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[EventHandler] = []
        self._kept: dict[int, deque[str]] = {}  # by tunnel id, while it has a handle
        self._early: dict[int, deque[str]] = {}
        self._watchers: dict[str, Callable[[str], None]] = {}  # by tunnel name

    def subscribe(self, callback: EventHandler) -> None:
        self._listeners.append(callback)

    @contextlib.contextmanager
    def watch(self, name: str, show: Callable[[str], None] | None) -> Iterator[None]:
        """While in the block, ``show(line)`` gets the -v lines of the tunnel
        named ``name`` (unique among the live ones and those opening)."""
        if show is None:
            yield
            return
        with self._lock:
            self._watchers[name] = show
        try:
            yield
        finally:
            with self._lock:
                self._watchers.pop(name, None)

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
            text, extra = message.get("message"), None
            if "verbosity" in message:
                self._show(message)
                who = message.get("name") or message.get("tunnel")
                text = f"{who}: {text}"
                extra = {
                    "tunnel": message.get("tunnel"),
                    "tunnel_name": message.get("name"),
                    "verbosity": message.get("verbosity"),
                }
            logging.getLogger(f"nbtunnel.engine.{origin}").log(
                int(message.get("level", logging.INFO)), "%s", text, extra=extra
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

    def note(
        self,
        verbosity: int,
        tunnel: Any,
        how: str,
        show: Callable[[str], None] | None,
        adding: Sequence[object] = (),
    ) -> contextlib.AbstractContextManager[None]:
        """Say at -v that a line connects nothing: ``tunnel`` (a handle) is
        open already, or the line ``joined`` it and its SSH connection (and
        is ``adding`` forwards to it).  Returns what watches the tunnel for
        ``show``, for a block that adds them."""
        if not verbosity:
            return contextlib.nullcontext()
        said = (
            f"tunnel '{tunnel.name}' is open already (the same line)"
            if how == "open already"
            else f"the line joins tunnel '{tunnel.name}' and its live SSH connection"
        )
        said += (
            ", nothing to connect: its forwards are added to it"
            if adding
            else ": nothing to connect"
        )
        with self.watch(tunnel.name, show):
            self(
                {
                    "event": "log",
                    "tunnel": tunnel.id,
                    "name": tunnel.name,
                    "verbosity": 1,
                    "level": logging.INFO,
                    "logger": "nbtunnel.verbose",
                    "message": said,
                }
            )
        return self.watch(tunnel.name, show)

    def _show(self, message: Message) -> None:
        with self._lock:
            show = self._watchers.get(str(message.get("name")))
        line = verbose_line(message)
        if show is not None and line is not None:
            try:
                show(line)
            except Exception:
                logger.exception("nbtunnel: showing a -v line failed")

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
