"""A tunnel shared with a cluster's workers: the line each worker opens, and
what this side knows of each worker's copy.

``nbtunnel.dask`` sends the line (never a key or a secret) to every worker,
which opens it with its own machine's keys, agent and ssh config, on the same
port numbers as this tunnel, so that the URL the kernel made works in every
task.  Each worker reports how it went; :class:`Workers` keeps the latest
word of each, which the tables and the panel show under the tunnel.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from ..errors import SpecError
from ..grammar.forwards import ForwardSpec, parse_forward
from ..grammar.spec import TunnelSpec
from ..status import ForwardSnapshot

WorkerState = Literal["up", "failed", "ended"]
SHOWN_ERRORS = 3  # workers' errors in the one line under a tunnel


def worker_line(spec: TunnelSpec, forwards: Sequence[ForwardSnapshot]) -> str:
    """The line a worker opens to serve what ``forwards`` serve here.

    Each -L and -D on the port it got here (port 0 resolved), so one URL
    works everywhere; never a question (BatchMode: a worker has nobody to
    ask); without -v (a worker has no cell to show it in).  A -R is left
    out (every worker would ask the server for the same port), as is a -L
    on a unix socket; a tunnel of nothing else is refused, saying why.
    """
    shared, why = [], ""
    for forward in forwards:
        if forward.state in ("stopped", "failed"):
            continue
        asked = parse_forward(*forward.spec.split(" ", 1))
        try:
            _check_shareable(forward.spec, asked)
        except SpecError as exc:
            why = why or f": {exc}"
            continue
        shared.append(replace(asked, listen_port=forward.listen_port))
    if not shared:
        raise SpecError(
            f"'{spec.text}' has no forward running to share{why}", text=spec.text
        )
    return _batch(replace(spec, forwards=tuple(shared), verbose=0)).text


def line_for_workers(spec: TunnelSpec) -> str:
    """A line given as text (no tunnel here): every forward needs its port
    written out, since workers cannot agree on a port 0."""
    for forward in spec.forwards:
        _check_shareable(str(forward), forward)
        if forward.listen_port == 0:
            raise SpecError(
                f"'{forward}': a worker needs the port written out (not 0), the"
                " same on every worker; or share a tunnel open here:"
                " TunnelPlugin(tunnel) uses its ports",
                text=str(forward),
            )
    if not spec.forwards:
        raise SpecError(f"'{spec.text}' has no forward: add -L or -D", text=spec.text)
    return _batch(replace(spec, verbose=0)).text


def _check_shareable(text: str, forward: ForwardSpec) -> None:
    if forward.kind == "remote":
        raise SpecError(
            f"'{text}' cannot be shared with workers: each would ask the server"
            " for the same port; share a tunnel of -L and -D forwards",
            text=text,
        )
    if forward.listen_path is not None:
        raise SpecError(
            f"'{text}' listens on a unix socket, which a task on another machine"
            " cannot name the same way: share a -L on a TCP port",
            text=text,
        )


def _batch(spec: TunnelSpec) -> TunnelSpec:
    if spec.option("BatchMode") is not None:
        return spec  # the first one given wins, as in ssh: theirs
    return replace(spec, options=(*spec.options, ("BatchMode", "yes")))


@dataclass(frozen=True)
class WorkerShare:
    """What one worker last said of its copy of a shared tunnel."""

    worker: str  # its address, as the scheduler names it
    state: WorkerState
    error: str | None = None
    reused: bool = False  # it uses this machine's own forward (same place)


class Workers:
    """The workers a tunnel is shared with, by address; their latest word.

    Changed from Dask's threads (a worker joining, failing, leaving), read
    by the tables' and the panel's.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_address: dict[str, WorkerShare] = {}
        # When each worker was last said to have gone (time.monotonic()).
        self._gone: dict[str, float] = {}
        self.plugin: str | None = None  # the plugin's name while shared
        # Per client (nbtunnel.dask): unregisters it; the tunnel stopping does.
        self.closers: dict[int, Callable[[], None]] = {}

    def note(self, share: WorkerShare, asked_at: float | None = None) -> None:
        """A worker's word; ``asked_at`` when it answers a question asked then
        (a worker said to have gone since is not brought back by it)."""
        with self._lock:
            if share.state == "ended":
                self._by_address.pop(share.worker, None)
                self._gone[share.worker] = time.monotonic()
            elif asked_at is None or self._gone.get(share.worker, 0.0) < asked_at:
                self._by_address[share.worker] = share

    def forget(self) -> None:
        """The tunnel is no longer shared (unregistered)."""
        with self._lock:
            self._by_address.clear()
            self._gone.clear()
            self.plugin = None
            self.closers = {}

    def close(self) -> None:
        """Its tunnel stopped: no worker keeps a copy (nbtunnel.dask)."""
        with self._lock:
            closers, self.closers = list(self.closers.values()), {}
        for closer in closers:
            closer()

    def all(self) -> list[WorkerShare]:
        with self._lock:
            return sorted(self._by_address.values(), key=lambda s: s.worker)

    def summary(self) -> str | None:
        """One line for the tables and the panel, or None when not shared."""
        shares = self.all()
        if not shares:
            return None
        up = sum(1 for s in shares if s.state == "up")
        count = f"{up}" if up == len(shares) else f"{up} of {len(shares)}"
        noun = "worker" if len(shares) == 1 else "workers"
        # Each error names its worker already ("worker tcp://…: …").
        failed = [s.error or s.worker for s in shares if s.state == "failed"]
        if len(failed) > SHOWN_ERRORS:  # a hundred workers, one line still
            more = len(failed) - SHOWN_ERRORS
            failed = [*failed[:SHOWN_ERRORS], f"{more} more failed (Tunnel.workers)"]
        return "; ".join([f"up on {count} Dask {noun}", *failed])
