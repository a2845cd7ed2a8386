"""The manager: the engine a caller runs, the tunnels it opened, and the rules.

Every face (``nbtunnel.open``, ``%tunnel``, the CLI, the panel) opens, adds,
cancels and stops through a :class:`Manager`, so that a line means the same
whichever way it was typed: the decisions are in ``rules``, the handles in
``handles``, the engine behind ``engine.client``.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable, Sequence

from ..engine.client import EventHandler
from ..errors import EngineError, ForwardError, SpecError
from ..grammar.forwards import ForwardSpec
from ..grammar.spec import TunnelSpec, parse
from ..settings.resolve import Prompt, forwards_from_config, resolve
from ..status import TunnelSnapshot
from . import arguments, reshape, rules
from .engine_side import EngineMode, EngineSide
from .events import Events
from .handles import Forward, Tunnel, engine_died

logger = logging.getLogger("nbtunnel")
ENGINE_ENV = "NBTUNNEL_ENGINE"


class Manager:
    """Every tunnel this process opened, and the engine that runs them."""

    def __init__(self, engine: EngineMode | None = None) -> None:
        mode = engine if engine is not None else os.environ.get(ENGINE_ENV, "process")
        self.mode: EngineMode = arguments.engine(mode)  # type: ignore[assignment]
        self._lock = threading.Lock()
        self._tunnels: dict[int, Tunnel] = {}
        self._events = Events()
        self._engine = EngineSide(self.mode, self._events, self._forget_all, self._died)
        self._one_at_a_time = _OneAtATime()
        self._naming: set[str] = set()  # labels of opens under way
        # One restart or remove at a time: two panels clicking one toggle.
        self._reshaping = threading.Lock()
        self._closed = False

    # -- the engine -------------------------------------------------------

    def start_engine(self, *, background: bool = False) -> None:
        """Start the engine now instead of at the first :meth:`open` (in the
        background: a failure is tried again, and raised, by the next open)."""
        if background:
            self._engine.start_in_background()
        else:
            self._engine.get()

    @property
    def engine_pid(self) -> int | None:
        """The engine process's PID (this process's in inline mode), once started."""
        return self._engine.pid

    def subscribe(self, callback: EventHandler) -> None:
        """Call ``callback(event_dict)`` for every engine event (from a background thread)."""
        self._events.subscribe(callback)

    # -- tunnels ----------------------------------------------------------

    def open(
        self,
        line: str | Sequence[str],
        *,
        name: str | None = None,
        prompt: Prompt | None = None,
        show: Callable[[str], None] | None = None,
        config_forwards: bool = True,
    ) -> Tunnel:
        """Open the forwards of one ``ssh`` command line over one SSH connection.

        The rules of ``client.rules``: the same line again is the same
        tunnel; the same destination and options (or a tunnel's name) add to
        that tunnel; a fixed port another forward holds is a ForwardError.
        ``name`` labels it (default: the host, made unique).  ``prompt(text,
        secret)`` asks a person what ssh would ask (without it an unknown
        host is refused, an encrypted key skipped).  ``show(line)`` gets a
        -v line's steps while it opens, from another thread.  The config's
        LocalForward & co. join the line's unless ``config_forwards`` is False.
        """
        name, prompt = arguments.name(name), arguments.prompt(prompt)
        spec = parse(line)
        with self._one_at_a_time(spec):
            live = self._live()
            again = rules.already_open(live, spec, name)
            if again is not None:  # the cell ran again: the tunnel is up, same ports
                self._events.note(spec.verbose, again, "open already", show)
                return again
            joined = rules.joined(live, spec, name)
            if joined is not None:
                tunnel, snap = joined
                missing = rules.missing(snap, spec.forwards)
                with self._events.note(spec.verbose, tunnel, "joined", show, missing):
                    if missing:  # their steps at the line's -v, shown as an open's
                        rules.check_ports(missing, tunnel.spec, live)
                        self._add(tunnel, missing, spec.verbose)
                return tunnel
            forwards = spec.forwards
            forwards += forwards_from_config(spec) if config_forwards else ()
            if not forwards:
                raise _no_forwards(spec)
            rules.check_ports(forwards, spec, live)
            return self._open(spec, forwards, name, prompt, show)

    def _open(
        self,
        spec: TunnelSpec,
        forwards: tuple[ForwardSpec, ...],
        name: str | None,
        prompt: Prompt | None,
        show: Callable[[str], None] | None = None,
    ) -> Tunnel:
        settings = resolve(spec)
        self._engine.get()  # a dead engine's tunnels are let go of first
        with self._lock:
            taken = {t.name for t in self._tunnels.values()} | self._naming
            label = rules.label(spec, name, taken)
            self._naming.add(label)  # until registered: opens run at once
        where = spec.destination.text
        try:
            with self._events.watch(label, show):
                snapshot = self._engine.open(
                    where, settings, forwards, label, prompt, spec.verbose
                )
            tunnel = Tunnel(self, spec, snapshot, self._events.take(snapshot.id))
            with self._lock:
                self._tunnels[tunnel.id] = tunnel
        finally:
            with self._lock:
                self._naming.discard(label)
        return tunnel

    def add(
        self, tunnel: Tunnel, forwards: Sequence[ForwardSpec]
    ) -> tuple[Forward, ...]:
        """Start more forwards on a live tunnel's connection; returns the new handles.

        A fixed port that another forward holds raises ForwardError naming
        the holder, as :meth:`open` does.
        """
        tunnel = arguments.tunnel(tunnel, self)
        forwards = arguments.forwards(forwards)
        with self._one_at_a_time(tunnel.spec):
            rules.check_ports(forwards, tunnel.spec, self._live())
            return self._add(tunnel, forwards)

    def _add(
        self, tunnel: Tunnel, forwards: Sequence[ForwardSpec], verbose: int = 0
    ) -> tuple[Forward, ...]:
        if tunnel.record.stopped or self._engine.running() is None:
            raise ForwardError(f"tunnel {tunnel.name} is not running")
        snapshot = self._engine.add(tunnel.id, forwards, verbose)
        return tunnel.record.adopt(tunnel, snapshot)

    def _live(self) -> rules.Live:
        """Every tunnel with a handle (not stopped), with one snapshot of each."""
        handles = {t.id: t for t in self.tunnels() if not t.record.stopped}
        return [(handles[s.id], s) for s in self.snapshots() if s.id in handles]

    def get(self, name: str | int) -> Tunnel | None:
        """The live tunnel with this name (or number)."""
        name = arguments.tunnel_key(name)
        for tunnel in self.tunnels():
            if name in (tunnel.name, str(tunnel.id)):
                return tunnel
        return None

    def tunnels(self) -> list[Tunnel]:
        """Every live tunnel, oldest first (a dead engine's, failed, until the next)."""
        with self._lock:
            return list(self._tunnels.values())

    def snapshots(self) -> list[TunnelSnapshot]:
        """A snapshot of every live tunnel, in one request, each listing its
        forwards as :attr:`Tunnel.forwards` does (restarted ones once, removed
        ones not); ``ForwardSnapshot.index`` is :attr:`Forward.index`."""
        handles = {t.id: t for t in self.tunnels()}
        found = self._engine.snapshots()
        if found is None:  # no engine: a dead one's tunnels, failed, saying how
            found = [t.record.last for t in handles.values() if t.record.stopped]
        return [
            handles[s.id].record.visible(s) if s.id in handles else s for s in found
        ]

    def snapshot(self, tunnel: Tunnel) -> TunnelSnapshot:
        """``tunnel`` now, every forward the engine ran at its index; its final
        snapshot once it stopped.  One round trip to the engine."""
        record = tunnel.record
        if record.stopped:
            return record.last
        try:
            found = self._engine.snapshots(tunnel.id)
        except EngineError as exc:
            return record.ended("failed", str(exc))
        if found is None:
            return record.ended("failed", self._engine.death)
        if not found:
            return record.ended("stopped", None)
        record.note(found[0])
        return found[0]

    def stop(self, tunnel: Tunnel) -> None:
        """Close ``tunnel``'s forwards and its SSH connection (see :meth:`Tunnel.stop`)."""
        with self._lock:
            known = self._tunnels.pop(tunnel.id, None)
        if known is None or tunnel.record.stopped:
            return
        self._events.drop(tunnel.id)
        final = tunnel.record.ended("stopped", None)
        try:
            self._engine.stop(tunnel.id)
        except EngineError as exc:
            final = tunnel.record.ended("failed", str(exc))
        tunnel.record.end(final)

    def stop_forward(self, forward: Forward) -> None:
        """Stop one forward (see :meth:`Forward.stop`)."""
        if not forward.tunnel.record.stopped:
            self._engine.stop(forward.tunnel.id, forward.index)

    # -- one forward: what the panel's buttons and ssh's -K do ----------

    def restart_forward(self, forward: Forward) -> Forward:
        """Start a stopped or failed forward again, on its port where it can;
        returns the new handle (see :func:`nbtunnel.client.reshape.restart`)."""
        with self._reshaping:
            return reshape.restart(self.add, forward)

    def remove_forward(self, forward: Forward) -> None:
        """Stop a forward and leave it out of :attr:`Tunnel.forwards`, tables and
        panels (see :func:`nbtunnel.client.reshape.remove`)."""
        with self._reshaping:
            last = reshape.remove(forward)
        if last:
            forward.tunnel.stop()

    def cancel(self, flag: str, listen: str | int) -> Forward:
        """Stop the live forward of ``flag`` (-L, -R or -D; or -KL, -KR, -KD)
        that listens on ``[bind_address:]port`` (or a socket's path), as ssh's
        ``-KL`` does; returns it.  Raises SpecError if none does."""
        flag, listen = arguments.flag(flag), arguments.listen(listen)
        tunnel, index = rules.to_cancel(self._live(), flag, listen)
        forward = tunnel.record.handles[index]
        forward.stop()
        return forward

    def stop_all(self) -> None:
        """Stop every tunnel of this process; the engine stays for the next one."""
        for tunnel in self.tunnels():
            tunnel.stop()

    def _died(self, why: str) -> None:
        engine_died(self.tunnels(), why)  # shown so until a new engine starts

    def _forget_all(self, why: str) -> None:
        """A new engine replaces a dead one: let go of the tunnels it ran."""
        with self._lock:
            lost, self._tunnels = list(self._tunnels.values()), {}
        for tunnel in lost:
            self._events.drop(tunnel.id)  # a new engine numbers from 1 again
            tunnel.record.fail(why)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran; views such as the widget panel then let go."""
        return self._closed

    def close(self) -> None:
        """Stop everything and end the engine. Safe to call more than once."""
        self._closed = True
        self._engine.closed = True  # no start in the background from now on
        self.stop_all()
        self._engine.close()


class _OneAtATime:
    """Opens and adds on one SSH connection decide and act one at a time:
    the same line run twice at once is one tunnel."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[TunnelSpec, threading.Lock] = {}

    def __call__(self, spec: TunnelSpec) -> threading.Lock:
        """The lock of ``spec``'s SSH connection, to hold while deciding."""
        with self._lock:
            return self._locks.setdefault(rules.connection_key(spec), threading.Lock())


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
