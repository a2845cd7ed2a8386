"""The caller's side: tunnel handles whose state the engine keeps, and their registry."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, Literal

from . import display
from .config import Prompt, forwards_from_config, resolve
from .engine.client import EngineClient, EventHandler, InlineClient, ProcessClient
from .engine.protocol import Message
from .errors import EngineError, ForwardError, SpecError
from .spec import ForwardSpec, TunnelSpec, parse, parse_forward
from .status import ForwardSnapshot, ForwardStats, State, TunnelSnapshot

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
        """The port it listens on, with 0 resolved to the port actually bound."""
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

    def stop(self) -> None:
        """Stop this forward only (a -R is cancelled on the server); the tunnel stays up."""
        self._tunnel._manager._stop_forward(self)

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
        self._forwards: list[Forward] = []
        # The latest events, newest last, shown in its display.
        self.events: deque[str] = deque(maxlen=EVENTS_KEPT)
        self._adopt(snapshot)

    def _adopt(self, snapshot: TunnelSnapshot) -> None:
        """Handles for forwards the engine added since (they only ever grow)."""
        self._last = snapshot
        for f in snapshot.forwards[len(self._forwards) :]:
            self._forwards.append(Forward(self, f))

    @property
    def forwards(self) -> tuple[Forward, ...]:
        """Its forwards in the order they were asked for, stopped ones included."""
        return tuple(self._forwards)

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
        snap = self._snapshot
        lines = [f"<Tunnel {self.name} via {self.destination} [{snap.state}]"]
        lines += [
            "  " + display.forward_line(f, self.destination) for f in snap.forwards
        ]
        if snap.error:
            lines.append(f"  error: {snap.error}")
        return "\n".join(lines) + ">"

    def _repr_html_(self) -> str:
        return display.html_table([self._snapshot]) + display.html_events(self.events)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        text = display.text_table([self._snapshot])
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
        self._client: EngineClient | None = None
        self._tunnels: dict[int, Tunnel] = {}
        self._listeners: list[EventHandler] = []
        self._early: dict[int, deque[str]] = {}

    # -- the engine -------------------------------------------------------

    def _engine(self) -> EngineClient:
        with self._lock:
            if self._client is None or not self._client.alive:
                if self._client is not None:
                    self._forget_all("the nbtunnel engine stopped")
                cls = ProcessClient if self.mode == "process" else InlineClient
                self._client = cls(self._on_event)
            return self._client

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
        return tunnel.forwards[before:]

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
        """A snapshot of every live tunnel, in one request."""
        if self._client is None or not self._client.alive:
            return []
        return [TunnelSnapshot.from_dict(d) for d in self._client.request("snapshot")]

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

    def stop_all(self) -> None:
        """Stop every tunnel of this process; the engine stays for the next one."""
        for tunnel in self.tunnels():
            tunnel.stop()

    def _forget_all(self, why: str) -> None:
        for tunnel in self._tunnels.values():
            tunnel._last, tunnel._stopped = _ended(tunnel, "failed", why), True
        self._tunnels.clear()

    def close(self) -> None:
        """Stop everything and end the engine. Safe to call more than once."""
        self.stop_all()
        with self._lock:
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
