"""States, live counters and the immutable snapshots that cross the engine pipe."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

State = Literal["starting", "up", "reconnecting", "stopped", "failed"]
STATES: tuple[State, ...] = ("starting", "up", "reconnecting", "stopped", "failed")


@dataclass(frozen=True)
class ForwardStats:
    """A forward's counters at one moment."""

    bytes_to_target: int = 0
    bytes_from_target: int = 0
    connections_open: int = 0
    connections_total: int = 0
    connections_failed: int = 0
    last_error: str | None = None
    # Connections reset at once because another user made them (OwnerOnly).
    connections_refused: int = 0

    def __add__(self, other: ForwardStats) -> ForwardStats:
        return ForwardStats(
            bytes_to_target=self.bytes_to_target + other.bytes_to_target,
            bytes_from_target=self.bytes_from_target + other.bytes_from_target,
            connections_open=self.connections_open + other.connections_open,
            connections_total=self.connections_total + other.connections_total,
            connections_failed=self.connections_failed + other.connections_failed,
            connections_refused=self.connections_refused + other.connections_refused,
            last_error=other.last_error or self.last_error,
        )


class Counters:
    """The live, thread-safe counters behind one forward's :class:`ForwardStats`.

    Every relay thread adds to them; a lock keeps the byte counts exact,
    which the transfer tests check against what the target saw.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._to_target = 0
        self._from_target = 0
        self._open = 0
        self._total = 0
        self._failed = 0
        self._refused = 0
        self._last_error: str | None = None

    def add_to_target(self, n: int) -> None:
        with self._lock:
            self._to_target += n

    def add_from_target(self, n: int) -> None:
        with self._lock:
            self._from_target += n

    def opened(self) -> None:
        with self._lock:
            self._open += 1
            self._total += 1

    def closed(self) -> None:
        with self._lock:
            self._open -= 1

    def failed(self, message: str) -> None:
        with self._lock:
            self._failed += 1
            self._last_error = message

    def refused(self, message: str) -> None:
        with self._lock:
            self._refused += 1
            self._last_error = message

    def snapshot(self) -> ForwardStats:
        with self._lock:
            return ForwardStats(
                self._to_target,
                self._from_target,
                self._open,
                self._total,
                self._failed,
                self._last_error,
                self._refused,
            )


@dataclass(frozen=True)
class ForwardSnapshot:
    """One forward as the engine sees it: where it listens, its state, its counters."""

    index: int
    spec: str  # canonical "-L ..." text
    kind: str
    listen_host: str | None
    listen_port: int | None
    listen_path: str | None
    target_host: str | None
    target_port: int | None
    target_path: str | None
    state: State
    error: str | None = None
    stats: ForwardStats = field(default_factory=ForwardStats)
    note: str | None = None

    @property
    def flag(self) -> str:
        """``-L``, ``-R`` or ``-D``, as its spec starts."""
        return self.spec.split(" ", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ForwardSnapshot:
        data = dict(data)
        data["stats"] = ForwardStats(**data.get("stats", {}))
        return cls(**data)


@dataclass(frozen=True)
class TunnelSnapshot:
    """One tunnel (an SSH connection and its forwards) at one moment."""

    id: int
    destination: str
    state: State
    error: str | None
    forwards: tuple[ForwardSnapshot, ...]
    started_at: float = 0.0
    name: str = ""
    # The caller's side only: how its copies on a cluster's workers are
    # (nbtunnel.dask), one line; None when it is not shared.
    workers: str | None = None

    @property
    def label(self) -> str:
        """The name people use for it, or its number."""
        return self.name or str(self.id)

    @property
    def stats(self) -> ForwardStats:
        total = ForwardStats()
        for forward in self.forwards:
            total = total + forward.stats
        return total

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["forwards"] = [f.to_dict() for f in self.forwards]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TunnelSnapshot:
        data = dict(data)
        data["forwards"] = tuple(ForwardSnapshot.from_dict(f) for f in data["forwards"])
        return cls(**data)
