"""The handles a caller holds: :class:`Tunnel` and :class:`Forward`.

The engine keeps every tunnel's state; a handle reads it through its
manager, one round trip per read (``snapshot()`` gets all of it at once).
What only the caller's side knows of a tunnel (its handles, which forward
replaced which, which were removed, its last snapshot once stopped) is its
:class:`~nbtunnel.client.record.TunnelRecord`, which the handles read and
only the manager changes.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import replace
from types import TracebackType
from typing import Any, Protocol

from ..errors import MissingDependencyError
from ..grammar.forwards import ForwardSpec, parse_forward
from ..grammar.spec import TunnelSpec
from ..status import ForwardSnapshot, ForwardStats, State, TunnelSnapshot
from . import browser, display, urls
from .record import TunnelRecord
from .sharing import WorkerShare


class Owner(Protocol):
    """What a handle asks of the manager that made it (``client.manager``)."""

    def snapshot(self, tunnel: Tunnel) -> TunnelSnapshot: ...

    def stop(self, tunnel: Tunnel) -> None: ...

    def stop_forward(self, forward: Forward) -> None: ...

    def restart_forward(self, forward: Forward) -> Forward: ...

    def remove_forward(self, forward: Forward) -> None: ...


def _dask() -> Any:
    # distributed is optional and slow to import: only when a tunnel is shared.
    try:
        from . import dask
    except ImportError as exc:
        if exc.name is None or not exc.name.startswith(("distributed", "dask")):
            raise
        raise MissingDependencyError(
            "sharing a tunnel with Dask workers needs distributed:"
            " pip install 'nbtunnel[dask]'"
        ) from None
    return dask


def engine_died(tunnels: Iterable[Tunnel], why: str) -> None:
    """The engine that ran ``tunnels`` died: each has failed, saying how in its
    state and in its events."""
    line = f"{time.strftime('%H:%M:%S')} {why}"
    for tunnel in tunnels:
        tunnel.record.fail(why)
        tunnel.events.append(line)


class Forward:
    """One ``-L``/``-R``/``-D`` of a tunnel; a handle on what the engine runs."""

    def __init__(self, tunnel: Tunnel, snapshot: ForwardSnapshot) -> None:
        self._tunnel = tunnel
        self._first = snapshot
        self.spec: ForwardSpec = parse_forward(*snapshot.spec.split(" ", 1))

    def snapshot(self) -> ForwardSnapshot:
        """Its state, counters and ports now, in one round trip to the engine."""
        # Every snapshot of a tunnel, live or ended, lists all of its
        # forwards in order, failed ones included.
        return self._tunnel.snapshot(visible=False).forwards[self._first.index]

    @property
    def kind(self) -> str:
        """``"local"``, ``"remote"`` or ``"dynamic"``."""
        return self.spec.kind

    @property
    def listen_host(self) -> str | None:
        """Where it listens (this machine for -L/-D, the server for -R)."""
        return self._first.listen_host

    @property
    def listen_port(self) -> int | None:
        """The port it listens on, with 0 resolved to the port actually bound.

        A ``-R`` of port 0 gets a new one when its tunnel reconnects; a
        local listener keeps its port for good.
        """
        if self.kind == "remote" and self._first.listen_port is not None:
            return self.snapshot().listen_port
        return self._first.listen_port

    @property
    def listen_path(self) -> str | None:
        return self._first.listen_path

    @property
    def target_host(self) -> str | None:
        return self.spec.target_host

    @property
    def target_port(self) -> int | None:
        return self.spec.target_port

    @property
    def target_path(self) -> str | None:
        return self.spec.target_path

    @property
    def state(self) -> State:
        return self.snapshot().state

    @property
    def error(self) -> str | None:
        """Why the forward failed, if it did (one connection's failure is in ``stats``)."""
        return self.snapshot().error

    @property
    def stats(self) -> ForwardStats:
        """Live counters: bytes each way, connections open and total, last error."""
        return self.snapshot().stats

    @property
    def note(self) -> str | None:
        """A caveat worth saying, e.g. that the server decides how wide -R binds."""
        return self._first.note

    @property
    def tunnel(self) -> Tunnel:
        return self._tunnel

    # -- what clients need to use it --------------------------------------

    def url(self, template: str) -> str:
        """``template``, a database or HTTP URL, pointed at this -L forward's end here.

        Only the host and port change; scheme, user, password (as encoded),
        path, query and fragment stay as written, and the port in the
        template is the one it replaces, so the URL the service documents
        works as is::

            engine = sqlalchemy.create_engine(
                fwd.url("postgresql://analyst@db.internal:5432/sales")
            )  # postgresql://analyst@127.0.0.1:<port>/sales

        A -L listening on a unix socket named like PostgreSQL's
        (``DIR/.s.PGSQL.PORT``) gives a PostgreSQL URL ``?host=DIR&port=PORT``.
        Raises :class:`~nbtunnel.UrlError` (a ``ForwardError`` and a
        ``ValueError``) for a malformed template, a -R or -D forward, or one
        that is stopped.
        """
        return urls.forward_url(template, self.snapshot(), self._tunnel.destination)

    def browser_url(self, path: str = "/", absolute: bool = False) -> str:
        """Where the user's browser opens ``path`` of the web service at this
        -L: through the Jupyter server's jupyter-server-proxy
        (``<base_url>proxy/PORT/``, ``proxy/absolute/PORT/`` with
        ``absolute``) when the kernel runs under one that has it, else
        ``http://127.0.0.1:PORT/`` (:func:`nbtunnel.client.browser.route`
        says which, and why).  For a -R, the URL to share.  Raises
        :class:`~nbtunnel.UrlError` for a -D, or a forward that is stopped.
        """
        snapshot, destination = self.snapshot(), self._tunnel.destination
        return urls.browser_url(snapshot, destination, browser.route(), path, absolute)

    @property
    def proxies(self) -> dict[str, str]:
        """This -D forward as ``requests``/``httpx`` proxies.

        ``{"http": "socks5h://127.0.0.1:PORT", "https": ...}``: socks5h, so
        that the server resolves host names (internal ones work).  requests
        takes it as ``proxies=`` (with ``requests[socks]`` installed); httpx
        (0.28+, ``httpx[socks]``) as ``proxy=fwd.proxies["https"]``.  Raises
        :class:`~nbtunnel.UrlError` for a -L or -R forward, or a
        stopped one.
        """
        return urls.proxies(self.snapshot())

    def stop(self) -> None:
        """Stop this forward only (a -R is cancelled on the server); the tunnel stays up."""
        self._tunnel.manager.stop_forward(self)

    # -- restarting and removing (what the widget panel's buttons do) -----

    @property
    def index(self) -> int:
        """Its number in its tunnel, as the engine counts them (never reused)."""
        return self._first.index

    def restart(self) -> Forward:
        """Start it again if it stopped or failed; see :meth:`Manager.restart_forward`."""
        return self._tunnel.manager.restart_forward(self)

    def remove(self) -> None:
        """Stop it and leave it out of its tunnel; see :meth:`Manager.remove_forward`."""
        self._tunnel.manager.remove_forward(self)

    @property
    def replaced_by(self) -> Forward | None:
        """The forward that :meth:`restart` started in its place, if any."""
        return self._tunnel.record.replaced.get(self)

    @property
    def current(self) -> Forward:
        """The handle that runs in its place now: itself unless it was restarted."""
        forward = self
        while (after := forward.replaced_by) is not None:
            forward = after
        return forward

    @property
    def removed(self) -> bool:
        """Whether :meth:`remove` dropped it from its tunnel."""
        return self in self._tunnel.record.removed

    def __repr__(self) -> str:
        line = display.forward_line(self.snapshot(), self._tunnel.destination)
        return f"<Forward {line}>"

    def _one(self) -> TunnelSnapshot:
        snap = self._tunnel.snapshot(visible=False)
        return replace(snap, forwards=(snap.forwards[self._first.index],))

    def _repr_html_(self) -> str:
        return display.html_table([self._one()], browser.route())

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(display.text_table([self._one()], browser.route()))


class Tunnel:
    """One SSH connection and the forwards it carries.

    ``with nbtunnel.open(...) as t:`` stops it on leaving the block.
    """

    def __init__(
        self,
        manager: Owner,
        spec: TunnelSpec,
        snapshot: TunnelSnapshot,
        events: deque[str],
    ) -> None:
        self.manager = manager
        self.spec = spec
        self.id = snapshot.id
        self.name = snapshot.label
        self.destination = snapshot.destination
        self.record = TunnelRecord(snapshot)
        # The latest events, newest last, shown in its display.
        self.events = events
        self.record.adopt(self, snapshot)

    @property
    def forwards(self) -> tuple[Forward, ...]:
        """Its forwards in the order they were asked for, stopped ones included.

        A restarted forward's new handle takes the old one's place; a removed
        one is left out (see :meth:`Manager.restart_forward`).
        """
        return tuple(self.record.shown)

    def snapshot(self, *, visible: bool = True) -> TunnelSnapshot:
        """Its state, counters and forwards now, in one round trip to the engine.

        The forwards are those of :attr:`forwards`, in order; with
        ``visible=False``, every forward the engine ran, at its index.
        """
        snap = self.manager.snapshot(self)
        return self.record.visible(snap) if visible else snap

    @property
    def state(self) -> State:
        """``starting``, ``up``, ``reconnecting``, ``stopped`` or ``failed``."""
        return self.manager.snapshot(self).state

    @property
    def error(self) -> str | None:
        return self.manager.snapshot(self).error

    @property
    def stats(self) -> ForwardStats:
        """The sum of its forwards' counters."""
        return self.manager.snapshot(self).stats

    def stop(self) -> None:
        """Close its forwards and its SSH connection, and its copies on a
        cluster's workers (:meth:`share_with`). Safe to call more than once."""
        self.manager.stop(self)
        self.record.workers.close()

    # -- on a cluster's workers (nbtunnel.dask) ---------------------------

    def share_with(
        self, client: Any, *, name: str | None = None
    ) -> dict[str, str | None]:
        """Open its -L and -D forwards on every worker of the Dask ``client``,
        on its ports, now and on workers that join later; returns each
        worker's error (None where it is up).  See :mod:`nbtunnel.dask`."""
        errors: dict[str, str | None] = _dask().share(self, client, name)
        return errors

    def unshare(self, client: Any, *, name: str | None = None) -> None:
        """Close its copies on the workers (``unregister_worker_plugin``)."""
        _dask().unshare(self, client, name)

    @property
    def workers(self) -> list[WorkerShare]:
        """What each worker it is shared with last said of its copy."""
        return self.record.workers.all()

    def __enter__(self) -> Tunnel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        snap = self.snapshot()
        lines = [f"<Tunnel {self.name} via {self.destination} [{snap.state}]"]
        lines += [
            "  " + display.forward_line(f, self.destination) for f in snap.forwards
        ]
        if snap.error:
            lines.append(f"  error: {snap.error}")
        if snap.workers:
            lines.append(f"  workers: {snap.workers}")
        return "\n".join(lines) + ">"

    def _repr_html_(self) -> str:
        events = tuple(self.events)  # the engine's thread appends meanwhile
        return display.html_table(
            [self.snapshot()], browser.route()
        ) + display.html_events(events)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        text = display.text_table([self.snapshot()], browser.route())
        events = tuple(self.events)  # the engine's thread appends meanwhile
        if events:
            text += "\nrecent events:\n" + "\n".join(f"  {e}" for e in events)
        p.text(text)
