"""The panel's refresher: one background thread for every live panel.

About once a second it asks each manager for one snapshot of its tunnels
(however many panels show them), and hands it to each of that manager's
panels, which set only the widget traits whose values changed (ipywidgets
then sends only those).  It starts with the first panel and ends when no
panel is left: panels are held weakly, and one that is closed, or whose
manager closed, is let go.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Protocol

from ...client.handles import Tunnel
from ...client.manager import Manager
from ...errors import TunnelError
from ...status import TunnelSnapshot

# The name it had when the panel was one module: logging set up for it holds.
logger = logging.getLogger("nbtunnel.widget")

TICK_SECONDS = 1.0

# Each live tunnel's handle with one snapshot of it (a single engine request
# for them all).
Live = list[tuple[Tunnel, TunnelSnapshot]]


def fetch(manager: Manager) -> Live | str:
    """Every live tunnel of the manager with a snapshot, or why the engine said no."""
    try:
        snaps = manager.snapshots()
    except TunnelError as exc:
        return f"cannot read the tunnels' state: {exc}"
    handles = {t.id: t for t in manager.tunnels()}
    return [(handles[s.id], s) for s in snaps if s.id in handles]


class Refreshed(Protocol):
    """What the ticker needs of a panel."""

    @property
    def manager(self) -> Manager: ...

    @property
    def alive(self) -> bool: ...

    def apply(self, live: Live | str, now: float) -> None: ...


class Ticker:
    """The one thread that refreshes every live panel, about once a second."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._panels: weakref.WeakSet[Refreshed] = weakref.WeakSet()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def thread(self) -> threading.Thread | None:
        """The running thread, if any panel is alive."""
        return self._thread

    def add(self, panel: Refreshed) -> None:
        with self._lock:
            self._panels.add(panel)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="nbtunnel-panel-ticker", daemon=True
                )
                self._thread.start()

    def poke(self) -> None:
        """Refresh now rather than at the next tick (after a click)."""
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(TICK_SECONDS)
            self._wake.clear()
            if not self._tick():
                return

    def _tick(self) -> bool:
        """Refresh every live panel; False (and the thread is done) when none is left.

        Panels are strong references only for the length of one tick.
        """
        with self._lock:
            panels = [p for p in self._panels if p.alive]
            if not panels:
                self._thread = None
                return False
        groups: dict[int, list[Refreshed]] = {}
        for panel in panels:
            groups.setdefault(id(panel.manager), []).append(panel)
        for group in groups.values():
            # One broken panel (or manager) must not stop the others' updates.
            try:
                live = fetch(group[0].manager)
            except Exception:
                logger.exception("nbtunnel panel: reading the tunnels failed")
                continue
            now = time.monotonic()
            for panel in group:
                try:
                    panel.apply(live, now)
                except Exception:
                    logger.exception("nbtunnel panel refresh failed")
        return True


TICKER = Ticker()
