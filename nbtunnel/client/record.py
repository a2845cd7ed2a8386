"""What the caller's side knows of one tunnel, beside what the engine keeps:
its handles, which forward replaced which, which were removed, its last
snapshot once stopped, and its copies on a cluster's workers.  The handles
read it; only the manager (and nbtunnel.dask, for the workers) change it.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import TYPE_CHECKING

from ..grammar.forwards import ForwardSpec
from ..status import State, TunnelSnapshot
from .sharing import Workers

if TYPE_CHECKING:
    from .handles import Forward, Tunnel


class TunnelRecord:
    """What the caller's side knows of one tunnel, beside what the engine keeps.

    Shared by the tunnel's handles (which read it) and its manager (which
    alone changes it).
    """

    def __init__(self, snapshot: TunnelSnapshot) -> None:
        self._lock = threading.Lock()
        self.last = snapshot  # the latest snapshot; the final one once stopped
        self.stopped = False
        self.handles: list[Forward] = []  # every handle, in the engine's order
        # What people see (Tunnel.forwards, tables, panels): a restarted
        # forward's new handle in the old one's place, removed ones left out.
        # The engine keeps every forward it ever ran, at its index.
        self.shown: list[Forward] = []
        self.replaced: dict[Forward, Forward] = {}
        self.removed: set[Forward] = set()
        # A restarted forward's spec as first asked for (with its port 0).
        self.asked: dict[Forward, ForwardSpec] = {}
        # Its copies on a cluster's workers (nbtunnel.dask), if shared.
        self.workers = Workers()

    def adopt(self, tunnel: Tunnel, snapshot: TunnelSnapshot) -> tuple[Forward, ...]:
        """Handles for forwards the engine added since (they only ever grow)."""
        from .handles import Forward  # the handles module imports this one

        self.note(snapshot)
        with self._lock:
            known = len(self.handles)
            new = tuple(Forward(tunnel, f) for f in snapshot.forwards[known:])
            self.handles += new
            self.shown += new
            return new

    def put_in_place(self, old: Forward, new: Forward, asked: ForwardSpec) -> None:
        """``new`` restarted ``old`` (asked for as ``asked``): shown in its place."""
        with self._lock:
            self.shown.remove(new)
            self.shown[self.shown.index(old)] = new
            self.replaced[old] = new
            self.asked[new] = asked

    def leave_out(self, forward: Forward) -> bool:
        """``forward`` was removed; returns whether none is left to show."""
        with self._lock:
            self.removed.add(forward)
            self.shown.remove(forward)
            return not self.shown

    def visible(self, snapshot: TunnelSnapshot) -> TunnelSnapshot:
        """The snapshot as tables show it: the forwards of Tunnel.forwards, in order."""
        by_index = {f.index: f for f in snapshot.forwards}
        with self._lock:
            shown = [by_index[h.index] for h in self.shown if h.index in by_index]
            known = len(self.handles)
        # Forwards of an add still in flight, whose handles come with its reply.
        shown += [f for f in snapshot.forwards if f.index >= known]
        workers = self.workers.summary()
        return replace(snapshot, forwards=tuple(shown), workers=workers)

    def ended(self, state: State, error: str | None) -> TunnelSnapshot:
        """The last snapshot, every forward of it ``state`` for ``error``."""
        last = self.last
        forwards = tuple(replace(f, state=state, error=error) for f in last.forwards)
        return replace(last, state=state, error=error, forwards=forwards)

    def note(self, snapshot: TunnelSnapshot) -> None:
        """The latest snapshot, unless the tunnel stopped (its last stays)."""
        with self._lock:
            if not self.stopped:
                self.last = snapshot

    def end(self, final: TunnelSnapshot) -> None:
        with self._lock:
            self.last, self.stopped = final, True

    def fail(self, why: str) -> None:
        """Its engine died (``why`` says how): failed, unless it had ended."""
        with self._lock:
            if not self.stopped:
                self.last, self.stopped = self.ended("failed", why), True
