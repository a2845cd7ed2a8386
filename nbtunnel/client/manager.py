"""The caller's side: tunnel handles whose state the engine keeps, and their registry."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, Literal

from ..engine.client import EngineClient, EventHandler, InlineClient, ProcessClient
from ..engine.protocol import Message
from ..errors import EngineError, ForwardError, SpecError
from ..grammar.spec import ForwardSpec, TunnelSpec, parse, parse_forward
from ..settings.resolve import Prompt, forwards_from_config, resolve
from ..status import ForwardSnapshot, ForwardStats, State, TunnelSnapshot
from . import display, urls

logger = logging.getLogger("nbtunnel")
EngineMode = Literal["process", "inline"]
ENGINE_ENV = "NBTUNNEL_ENGINE"
EVENTS_KEPT = 12


class Forward:
    """One ``-L``/``-R``/``-D`` of a tunnel; a handle on what the engine runs."""

    def __init__(self, tunnel: Tunnel, snapshot: ForwardSnapshot) -> None:
        self._tunnel = tunnel
        self._first = snapshot
        self.spec: ForwardSpec = parse_forward(*snapshot.spec.split(" ", 1))

    @property
    def _snapshot(self) -> ForwardSnapshot:
        # Every snapshot of a tunnel, live or ended, lists all of its
        # forwards in order, failed ones included.
        return self._tunnel._snapshot.forwards[self._first.index]

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
            return self._snapshot.listen_port
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
        return self._snapshot.state

    @property
    def error(self) -> str | None:
        """Why the forward failed, if it did (one connection's failure is in ``stats``)."""
        return self._snapshot.error

    @property
    def stats(self) -> ForwardStats:
        """Live counters: bytes each way, connections open and total, last error."""
        return self._snapshot.stats

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
        return urls.forward_url(template, self._snapshot, self._tunnel.destination)

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
        return urls.proxies(self._snapshot)

    def stop(self) -> None:
        """Stop this forward only (a -R is cancelled on the server); the tunnel stays up."""
        self._tunnel._manager._stop_forward(self)

    # -- restarting and removing (what the widget panel's buttons do) -----

    @property
    def index(self) -> int:
        """Its number in its tunnel, as the engine counts them (never reused)."""
        return self._first.index

    def restart(self) -> Forward:
        """Start it again if it stopped or failed; see :meth:`Manager.restart_forward`."""
        return self._tunnel._manager.restart_forward(self)

    def remove(self) -> None:
        """Stop it and leave it out of its tunnel; see :meth:`Manager.remove_forward`."""
        self._tunnel._manager.remove_forward(self)

    @property
    def replaced_by(self) -> Forward | None:
        """The forward that :meth:`restart` started in its place, if any."""
        return self._tunnel._replaced.get(self)

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
        return self in self._tunnel._removed

    def __repr__(self) -> str:
        return f"<Forward {display.forward_line(self._snapshot, self._tunnel.destination)}>"

    def _one(self) -> TunnelSnapshot:
        snap = self._tunnel._snapshot
        return replace(snap, forwards=(snap.forwards[self._first.index],))

    def _repr_html_(self) -> str:
        return display.html_table([self._one()])

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(display.text_table([self._one()]))


class Tunnel:
    """One SSH connection and the forwards it carries.

    ``with nbtunnel.open(...) as t:`` stops it on leaving the block.
    """

    def __init__(
        self, manager: Manager, spec: TunnelSpec, snapshot: TunnelSnapshot
    ) -> None:
        self._manager = manager
        self.spec = spec
        self.id = snapshot.id
        self.name = snapshot.label
        self.destination = snapshot.destination
        self._last = snapshot
        self._stopped = False
        self._forwards: list[Forward] = []  # every handle, in the engine's order
        # What people see (Tunnel.forwards, tables, panels): a restarted
        # forward's new handle in the old one's place, removed ones left out.
        # The engine keeps every forward it ever ran, at its index.
        self._shown: list[Forward] = []
        self._replaced: dict[Forward, Forward] = {}
        self._removed: set[Forward] = set()
        # A restarted forward's spec as first asked for (with its port 0).
        self._asked: dict[Forward, ForwardSpec] = {}
        # The latest events, newest last, shown in its display.
        self.events: deque[str] = deque(maxlen=EVENTS_KEPT)
        self._adopt(snapshot)

    def _adopt(self, snapshot: TunnelSnapshot) -> None:
        """Handles for forwards the engine added since (they only ever grow)."""
        self._last = snapshot
        for f in snapshot.forwards[len(self._forwards) :]:
            handle = Forward(self, f)
            self._forwards.append(handle)
            self._shown.append(handle)

    @property
    def forwards(self) -> tuple[Forward, ...]:
        """Its forwards in the order they were asked for, stopped ones included.

        A restarted forward's new handle takes the old one's place; a removed
        one is left out (see :meth:`Manager.restart_forward`).
        """
        return tuple(self._shown)

    def _visible(self, snapshot: TunnelSnapshot) -> TunnelSnapshot:
        """The snapshot as tables show it: the forwards of :attr:`forwards`, in order."""
        by_index = {f.index: f for f in snapshot.forwards}
        shown = [by_index[h.index] for h in self._shown if h.index in by_index]
        # Forwards of an add still in flight, whose handles come with its reply.
        shown += [f for f in snapshot.forwards if f.index >= len(self._forwards)]
        return replace(snapshot, forwards=tuple(shown))

    @property
    def _snapshot(self) -> TunnelSnapshot:
        if not self._stopped:
            self._last = self._manager._fetch(self)
        return self._last

    @property
    def state(self) -> State:
        """``starting``, ``up``, ``reconnecting``, ``stopped`` or ``failed``."""
        return self._snapshot.state

    @property
    def error(self) -> str | None:
        return self._snapshot.error

    @property
    def stats(self) -> ForwardStats:
        """The sum of its forwards' counters."""
        return self._snapshot.stats

    def stop(self) -> None:
        """Close its forwards and its SSH connection. Safe to call more than once."""
        self._manager._stop(self)

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
        snap = self._visible(self._snapshot)
        lines = [f"<Tunnel {self.name} via {self.destination} [{snap.state}]"]
        lines += [
            "  " + display.forward_line(f, self.destination) for f in snap.forwards
        ]
        if snap.error:
            lines.append(f"  error: {snap.error}")
        return "\n".join(lines) + ">"

    def _repr_html_(self) -> str:
        snap = self._visible(self._snapshot)
        return display.html_table([snap]) + display.html_events(self.events)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        text = display.text_table([self._visible(self._snapshot)])
        if self.events:
            text += "\nrecent events:\n" + "\n".join(f"  {e}" for e in self.events)
        p.text(text)


class Manager:
    """Every tunnel this process opened, and the engine that runs them."""

    def __init__(self, engine: EngineMode | None = None) -> None:
        mode = engine or os.environ.get(ENGINE_ENV, "process")
        if mode not in ("process", "inline"):
            raise ValueError(f"engine must be 'process' or 'inline', not {mode!r}")
        self.mode: EngineMode = mode  # type: ignore[assignment]
        self._lock = threading.Lock()
        # Held while an engine starts (up to HELLO_TIMEOUT), apart from
        # _lock so that listing tunnels never waits for a start.
        self._starting = threading.Lock()
        self._client: EngineClient | None = None
        self._tunnels: dict[int, Tunnel] = {}
        self._listeners: list[EventHandler] = []
        self._early: dict[int, deque[str]] = {}
        # One restart or remove at a time: two panels clicking the same
        # toggle must not start the forward twice.
        self._reshaping = threading.Lock()
        self._closed = False

    # -- the engine -------------------------------------------------------

    def _engine(self) -> EngineClient:
        with self._starting:
            return self._started()

    def _started(self) -> EngineClient:
        """The running engine, started if need be; called with _starting held."""
        client = self._client
        if client is None or not client.alive:
            cls = ProcessClient if self.mode == "process" else InlineClient
            client = cls(self._on_event)
            with self._lock:
                if self._client is not None:
                    self._forget_all("the nbtunnel engine stopped")
                self._client = client
        return client

    def start_engine(self, *, background: bool = False) -> None:
        """Start the engine now instead of at the first :meth:`open`.

        ``%load_ext nbtunnel`` calls this with ``background=True``: the
        engine's start (a new Python importing paramiko, most of the time
        to a first open) then overlaps the time until the next cell runs.
        A start that fails in the background is tried again, and its error
        raised, by the next open().
        """
        if not background:
            self._engine()
            return

        def start() -> None:
            with self._starting, contextlib.suppress(EngineError):
                if not self._closed:
                    self._started()

        threading.Thread(
            target=start, name="nbtunnel-engine-start", daemon=True
        ).start()

    @property
    def engine_pid(self) -> int | None:
        """The engine process's PID (this process's in inline mode), once started."""
        client = self._client
        return client.pid if client is not None else None

    def subscribe(self, callback: EventHandler) -> None:
        """Call ``callback(event_dict)`` for every engine event (from a background thread)."""
        self._listeners.append(callback)

    def _on_event(self, message: Message) -> None:
        kind = message.get("event")
        if kind == "log":
            # Under "nbtunnel", whatever logged it in the engine (paramiko,
            # say): that logger has a NullHandler, so nothing is printed into
            # a notebook cell unless the user configures logging.
            origin = str(message.get("logger", "engine")).removeprefix("nbtunnel.")
            logging.getLogger(f"nbtunnel.engine.{origin}").log(
                int(message.get("level", logging.INFO)), "%s", message.get("message")
            )
        else:
            logger.debug("engine event: %s", message)
            self._record(message)
        for callback in list(self._listeners):
            try:
                callback(message)
            except Exception:
                logger.exception("nbtunnel event listener failed")

    def _record(self, message: Message) -> None:
        line = display.event_line(message)
        tunnel_id = message.get("tunnel")
        if not line or not isinstance(tunnel_id, int):
            return
        with self._lock:
            tunnel = self._tunnels.get(tunnel_id)
            # Events of an open still in flight ("Allocated port") wait for
            # its handle.
            events = (
                tunnel.events
                if tunnel is not None
                else self._early.setdefault(tunnel_id, deque(maxlen=EVENTS_KEPT))
            )
            events.append(f"{time.strftime('%H:%M:%S')} {line}")
            while len(self._early) > 16:  # those of opens that failed
                self._early.pop(next(iter(self._early)))

    # -- tunnels ----------------------------------------------------------

    def open(
        self,
        line: str | Sequence[str],
        *,
        name: str | None = None,
        prompt: Prompt | None = None,
    ) -> Tunnel:
        """Open the forwards of one ``ssh`` command line over one SSH connection.

        ``name`` labels it in tables (default: the host, made unique).
        ``prompt(text, secret)`` asks a person what ssh would ask (an unknown
        host key, a key's passphrase) and returns the answer, or None; it
        runs in the calling thread.  Without it nothing is asked: an unknown
        host is refused, an encrypted key skipped.
        """
        spec = parse(line)
        forwards = spec.forwards + forwards_from_config(spec)
        if not forwards:
            raise _no_forwards(spec)
        settings = resolve(spec)
        with self._lock:
            taken = {t.name for t in self._tunnels.values()}
        if name is not None and name in taken:
            raise SpecError(f"a tunnel named '{name}' is open already", text=name)
        client = self._engine()
        result = client.request(
            "open",
            destination=spec.destination.text,
            settings=settings.to_dict(),
            forwards=[[f.flag, f.text] for f in forwards],
            name=name or _unique(spec.destination.host, taken),
            can_prompt=prompt is not None,
            on_prompt=prompt,
        )
        tunnel = Tunnel(self, spec, TunnelSnapshot.from_dict(result))
        with self._lock:
            self._tunnels[tunnel.id] = tunnel
            tunnel.events.extend(self._early.pop(tunnel.id, ()))
        return tunnel

    def add(
        self, tunnel: Tunnel, forwards: Sequence[ForwardSpec]
    ) -> tuple[Forward, ...]:
        """Start more forwards on a live tunnel's connection; returns the new handles."""
        client = self._client
        if tunnel._stopped or client is None or not client.alive:
            raise ForwardError(f"tunnel {tunnel.name} is not running")
        result = client.request(
            "add", tunnel=tunnel.id, forwards=[[f.flag, f.text] for f in forwards]
        )
        before = len(tunnel._forwards)
        tunnel._adopt(TunnelSnapshot.from_dict(result))
        return tuple(tunnel._forwards[before:])

    def get(self, name: str) -> Tunnel | None:
        """The live tunnel with this name (or number)."""
        for tunnel in self.tunnels():
            if name in (tunnel.name, str(tunnel.id)):
                return tunnel
        return None

    def tunnels(self) -> list[Tunnel]:
        """Every live tunnel, oldest first."""
        with self._lock:
            return list(self._tunnels.values())

    def snapshots(self) -> list[TunnelSnapshot]:
        """A snapshot of every live tunnel, in one request.

        Each lists its forwards as :attr:`Tunnel.forwards` does (restarted
        ones once, removed ones not); ``ForwardSnapshot.index`` is
        :attr:`Forward.index`.
        """
        if self._client is None or not self._client.alive:
            return []
        found = [TunnelSnapshot.from_dict(d) for d in self._client.request("snapshot")]
        with self._lock:
            handles = dict(self._tunnels)
        return [handles[s.id]._visible(s) if s.id in handles else s for s in found]

    def _fetch(self, tunnel: Tunnel) -> TunnelSnapshot:
        client = self._client
        if client is None or not client.alive:
            return _ended(tunnel, "failed", "the nbtunnel engine stopped")
        try:
            found = client.request("snapshot", tunnel=tunnel.id)
        except EngineError as exc:
            return _ended(tunnel, "failed", str(exc))
        if not found:
            return _ended(tunnel, "stopped", None)
        return TunnelSnapshot.from_dict(found[0])

    def _stop(self, tunnel: Tunnel) -> None:
        with self._lock:
            known = self._tunnels.pop(tunnel.id, None)
        if known is None or tunnel._stopped:
            return
        client = self._client
        final = _ended(tunnel, "stopped", None)
        if client is not None and client.alive:
            try:
                client.request("stop", tunnel=tunnel.id)
            except EngineError as exc:
                final = _ended(tunnel, "failed", str(exc))
        tunnel._last, tunnel._stopped = final, True

    def _stop_forward(self, forward: Forward) -> None:
        tunnel = forward.tunnel
        client = self._client
        if tunnel._stopped or client is None or not client.alive:
            return
        client.request("stop_forward", tunnel=tunnel.id, forward=forward._first.index)

    # -- restarting and removing forwards (the widget panel's buttons) ----

    def restart_forward(self, forward: Forward) -> Forward:
        """Start a stopped or failed forward again, with its spec; returns the new handle.

        A port the engine chose for ``0`` is asked for again, so a restarted
        ``-L 0:...`` keeps its port while that is free (else it takes any
        free one).  The new handle takes the old one's place in
        :attr:`Tunnel.forwards` and in tables; the old one stays ``stopped``
        and names its successor in :attr:`Forward.replaced_by`.  A forward
        that runs, or was restarted already, is returned as it is (the one
        running now).  Raises ForwardError if its tunnel is not running or
        the forward was removed.
        """
        with self._reshaping:
            current = forward.current
            if current.removed:
                raise ForwardError(f"{current.spec} was removed from its tunnel")
            if current.state not in ("stopped", "failed"):
                return current
            tunnel = current.tunnel
            spec = tunnel._asked.get(current, current.spec)
            again = spec
            if (
                spec.listen_path is None
                and not spec.listen_port
                and current.listen_port
            ):
                again = replace(spec, listen_port=current.listen_port)
            try:
                (new,) = self.add(tunnel, [again])
            except ForwardError:
                if again is spec:
                    raise
                (new,) = self.add(tunnel, [spec])  # that port is taken now
            with self._lock:
                tunnel._shown.remove(new)
                tunnel._shown[tunnel._shown.index(current)] = new
                tunnel._replaced[current] = new
                tunnel._asked[new] = spec
            return new

    def remove_forward(self, forward: Forward) -> None:
        """Stop a forward and leave it out of :attr:`Tunnel.forwards`, tables and panels.

        Removing a tunnel's last forward stops the tunnel, as its SSH
        connection would carry nothing.  Removing twice does nothing.
        """
        with self._reshaping:
            current = forward.current
            tunnel = current.tunnel
            if current.removed:
                return
            if current.state not in ("stopped", "failed"):
                current.stop()
            with self._lock:
                tunnel._removed.add(current)
                tunnel._shown.remove(current)
                empty = not tunnel._shown
        if empty:
            tunnel.stop()

    def stop_all(self) -> None:
        """Stop every tunnel of this process; the engine stays for the next one."""
        for tunnel in self.tunnels():
            tunnel.stop()

    def _forget_all(self, why: str) -> None:
        for tunnel in self._tunnels.values():
            tunnel._last, tunnel._stopped = _ended(tunnel, "failed", why), True
        self._tunnels.clear()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran; views such as the widget panel then let go."""
        return self._closed

    def close(self) -> None:
        """Stop everything and end the engine. Safe to call more than once."""
        self._closed = True
        self.stop_all()
        # After a start in progress, which would otherwise leave its engine.
        with self._starting, self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _unique(host: str, taken: set[str]) -> str:
    base = host.split(".")[0] if not host.replace(".", "").isdigit() else host
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def _ended(tunnel: Tunnel, state: State, error: str | None) -> TunnelSnapshot:
    last = tunnel._last
    forwards = tuple(replace(f, state=state, error=error) for f in last.forwards)
    return replace(last, state=state, error=error, forwards=forwards)


def _no_forwards(spec: TunnelSpec) -> SpecError:
    return SpecError(
        f"'{spec.text}' has no forward: add -L, -R or -D "
        "(e.g. -L 0:localhost:5432 for the server's port 5432)",
        text=spec.text,
    )


_default: Manager | None = None
_default_lock = threading.Lock()


def default_manager() -> Manager:
    """The process-wide manager behind ``nbtunnel.open`` (stopped at exit)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Manager()
            atexit.register(_default.close)
        return _default


def close_default() -> None:
    """Stop every tunnel and end the engine of the default manager (kernel shutdown)."""
    global _default
    with _default_lock:
        manager, _default = _default, None
    if manager is not None:
        atexit.unregister(manager.close)
        manager.close()


def open(
    line: str | Sequence[str],
    *,
    name: str | None = None,
    prompt: Prompt | None = None,
) -> Tunnel:
    """Open the forwards of one ``ssh`` command line, e.g. ``"-L 0:db:5432 user@host"``.

    See :meth:`Manager.open` for ``name`` and ``prompt``.
    """
    return default_manager().open(line, name=name, prompt=prompt)


def tunnels() -> list[Tunnel]:
    """Every live tunnel of this process."""
    return default_manager().tunnels() if _default is not None else []


def stop_all() -> None:
    """Stop every tunnel of this process."""
    if _default is not None:
        _default.stop_all()
