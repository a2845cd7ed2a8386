"""One tunnel's forwards on every worker of a Dask cluster (``distributed``).

A task runs on a worker, another machine, where the kernel's 127.0.0.1
means nothing.  :class:`TunnelPlugin` is a worker plugin: Dask runs its
``setup`` on every worker, those there now and those that join later, and
each opens the tunnel's -L and -D forwards on the same port numbers as the
kernel's, so the URL the kernel made works in every task.

What travels is the line alone (host, user, options, forwards: what
``%tunnel`` shows).  Each worker logs in with what its own machine and user
have (keys, agent, ssh config, known_hosts), as that user's ssh would, and
never asks (BatchMode).  No key, passphrase or password ever rides a Dask
message: the scheduler and every worker read those (and, without TLS,
anyone on the network between them).

This module imports ``distributed``; nothing else of nbtunnel imports it
but :meth:`Tunnel.share_with`, when called.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import inspect
import logging
import threading
import time
import weakref
from typing import Any

from distributed import WorkerPlugin

from ..errors import WorkerError
from ..grammar.spec import parse
from ..platform import place
from .handles import Tunnel
from .sharing import Workers, WorkerShare, line_for_workers, worker_line
from .worker_copy import WorkerCopy

logger = logging.getLogger("nbtunnel")
UNSHARE_WAIT = 5.0  # seconds a stopping tunnel waits for the scheduler
TOPIC = "nbtunnel"  # the topic of the workers' reports (Worker.log_event)


class TunnelPlugin(WorkerPlugin):
    """``client.register_plugin(TunnelPlugin(t))``: ``t``'s -L and -D forwards
    on every worker, on ``t``'s ports.

    ``tunnel_or_line`` is a tunnel open here (its ports, port 0 resolved)
    or a line whose every forward names its port.  A worker on this very
    loopback (a ``LocalCluster``) uses the forward already listening there.
    """

    # The same line registered again (a cell run twice) is left as it is:
    # no worker closes and reopens its forwards.
    idempotent = True

    def __init__(
        self, tunnel_or_line: Tunnel | str, *, name: str | None = None
    ) -> None:
        # Where the kernel's forwards listen (None for a line: none do).
        self.place: str | None = None
        if isinstance(tunnel_or_line, Tunnel):
            tunnel = tunnel_or_line
            self.line = worker_line(tunnel.spec, tunnel.snapshot().forwards)
            label = tunnel.name
            self.place = place.here()
        elif isinstance(tunnel_or_line, str):
            spec = parse(tunnel_or_line)
            self.line = line_for_workers(spec)
            label = spec.destination.host
        else:
            raise TypeError(
                "TunnelPlugin takes a Tunnel (from nbtunnel.open or %tunnel) or a"
                f" line, not {type(tunnel_or_line).__name__}"
            )
        self.label = label
        # One per line and kernel: two kernels' tunnels of one name (both
        # "db") on one scheduler do not replace each other's.
        digest = hashlib.sha256(f"{self.line}\0{self.place}".encode()).hexdigest()
        self.name = name or f"nbtunnel-{label}-{digest[:8]}"
        # On a worker: how its setup went, and what runs its copy.
        self.outcome: WorkerShare | None = None
        self._copy: WorkerCopy | None = None

    def __getstate__(self) -> dict[str, Any]:
        # What Dask sends: the line and where the kernel is, nothing live.
        return {**self.__dict__, "outcome": None, "_copy": None}

    async def setup(self, worker: Any) -> None:
        # In a thread: logging in takes a while, and the worker's event loop
        # must keep answering the scheduler meanwhile.  Returns once the
        # forwards listen, so the first task can use them.
        copy = WorkerCopy(self.line, self.label, self.name, self.place)
        self._copy = copy
        self.outcome = await asyncio.to_thread(copy.open, worker.address)
        _report(worker, self.name, self.outcome)
        if self.outcome.state == "failed":
            raise WorkerError(self.outcome.error)

    async def teardown(self, worker: Any) -> None:
        # Said first: a closing worker's messages stop soon.
        _report(worker, self.name, WorkerShare(worker.address, "ended"))
        copy, self._copy = self._copy, None
        if copy is not None:  # an open still logging in closes what it makes
            await asyncio.to_thread(copy.close)


def _report(worker: Any, name: str, share: WorkerShare) -> None:
    message = {"plugin": name, **dataclasses.asdict(share)}
    # A closing worker's stream may be gone: then so is the worker.
    with contextlib.suppress(OSError, RuntimeError):
        worker.log_event(TOPIC, message)


# Clients whose scheduler did not answer an unregister in UNSHARE_WAIT.
_unanswered: weakref.WeakSet[Any] = weakref.WeakSet()

# Per client: the plugin names it shares and the Workers record of each.
_followed: weakref.WeakKeyDictionary[Any, dict[str, Workers]] = (
    weakref.WeakKeyDictionary()
)


def share(
    tunnel: Tunnel, client: Any, name: str | None = None
) -> dict[str, str | None]:
    """:meth:`Tunnel.share_with`: register, then ask every worker how it went."""
    plugin = TunnelPlugin(tunnel, name=name)
    workers = tunnel.record.workers
    workers.plugin = plugin.name
    workers.closers[id(client)] = functools.partial(_unshare_quietly, tunnel, client)
    _follow(client, plugin.name, workers)
    register = getattr(client, "register_plugin", None) or client.register_worker_plugin
    # Recent distributed raise the first failure, older ones return each
    # worker's: either way, each worker's own outcome is asked next.
    with contextlib.suppress(WorkerError):
        register(plugin, name=plugin.name)
    # A worker that leaves meanwhile answers with an error: left out.
    asked_at = time.monotonic()
    outcomes = client.run(_outcome, plugin.name, on_error="return")
    found: dict[str, str | None] = {}
    for address, outcome in outcomes.items():
        if not isinstance(outcome, dict):  # joined since: it reports when set up
            continue
        said = WorkerShare(**outcome)
        workers.note(said, asked_at)
        found[address] = said.error
    return found


def _outcome(name: str, dask_worker: Any = None) -> dict[str, Any] | None:
    plugin = dask_worker.plugins.get(name) if dask_worker is not None else None
    outcome = getattr(plugin, "outcome", None)
    if not isinstance(outcome, WorkerShare):
        return None
    return dataclasses.asdict(outcome)


def _follow(client: Any, name: str, workers: Workers) -> None:
    """Keep ``workers`` up to date from the workers' reports on ``client``."""
    names = _followed.get(client)
    if names is None:
        names = _followed[client] = {}

        def on_report(event: tuple[float, dict[str, Any]]) -> None:
            message = event[1]
            record = names.get(message.get("plugin", ""))
            if record is not None:
                record.note(
                    WorkerShare(
                        message["worker"],
                        message["state"],
                        message.get("error"),
                        bool(message.get("reused")),
                    )
                )

        client.subscribe_topic(TOPIC, on_report)
        _follow_removals(client, names)
    names[name] = workers


def _follow_removals(client: Any, names: dict[str, Workers]) -> None:
    """A worker that closes or dies cannot say so itself (the scheduler
    drops a closing worker's messages): the scheduler's own word on the
    "all" topic does, for every tunnel shared on ``client``."""
    # A handler of the user's for the topic is kept and called too.
    previous = getattr(client, "_event_handlers", {}).get("all")

    async def on_cluster(event: tuple[float, Any]) -> None:
        message = event[1]
        if isinstance(message, dict) and message.get("action") == "remove-worker":
            for record in list(names.values()):
                record.note(WorkerShare(str(message.get("worker")), "ended"))
        if previous is not None:
            result = previous(event)
            if inspect.isawaitable(result):
                await result

    client.subscribe_topic("all", on_cluster)


def unshare(tunnel: Tunnel, client: Any, name: str | None = None) -> None:
    """Close ``tunnel``'s copies on every worker of ``client`` (none: nothing)."""
    workers = tunnel.record.workers
    plugin = name or workers.plugin
    if plugin is None:
        return
    _followed.get(client, {}).pop(plugin, None)  # its late reports: not shown
    # Unregistered already (by name, by hand): nothing is left to close.
    with contextlib.suppress(ValueError):
        client.unregister_worker_plugin(plugin)
    workers.closers.pop(id(client), None)
    if not workers.closers:  # shared with no other cluster
        workers.forget()


def _unshare_quietly(tunnel: Tunnel, client: Any) -> None:
    """The tunnel stopped: its copies go too, if the cluster is still there
    to be told (a client closed has nothing to say), within UNSHARE_WAIT: a
    frozen scheduler must not hold up a stop, nor the kernel's shutdown."""
    if getattr(client, "status", None) == "running":
        telling = threading.Thread(
            target=_unshare_logged, args=(tunnel, client), daemon=True
        )
        telling.start()
        # A scheduler that did not answer one tunnel is not waited for again
        # (a kernel shutting down stops every tunnel, one after another).
        telling.join(0 if client in _unanswered else UNSHARE_WAIT)
        if telling.is_alive():
            _unanswered.add(client)
            logger.warning(
                "tunnel %s: its Dask scheduler did not answer in %.0f s: its"
                " workers may keep their copies until it is unregistered",
                tunnel.name,
                UNSHARE_WAIT,
            )
    tunnel.record.workers.forget()


def _unshare_logged(tunnel: Tunnel, client: Any) -> None:
    try:
        unshare(tunnel, client)
        _unanswered.discard(client)  # it answers again
    except Exception as exc:  # noqa: BLE001  # the cluster's trouble, not the stop's
        logger.warning(
            "tunnel %s: its Dask workers were not told: %s", tunnel.name, exc
        )
