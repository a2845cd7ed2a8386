"""One Dask worker's copy of a shared tunnel: what opens it, holds it and
closes it (``nbtunnel.dask`` runs it from the worker plugin's setup and
teardown, in a thread of the worker).

- On the kernel's own loopback (a ``LocalCluster``) the kernel's forward is
  already there: it is used as it is.
- Elsewhere the worker opens the line with its own Manager (an engine
  process that ends with the worker), only the line's forwards.
- Several workers of one machine each listen on the port (ReusePort) once
  they have claimed it for this plugin (platform.port_claims): a port that
  another tunnel's workers hold is refused, never shared with them.
- Closing may come while the open still logs in (the worker closing, the
  plugin unregistered): what the open makes is then closed as it is made.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import replace

from ..errors import TunnelError, WorkerError
from ..grammar.spec import TunnelSpec, parse
from ..platform import place, port_claims
from .manager import Manager
from .sharing import WorkerShare

_LOOPBACK = {None: "127.0.0.1", "": "127.0.0.1", "*": "127.0.0.1"}
_LOOPBACK["localhost"] = "127.0.0.1"


class WorkerCopy:
    """The copy of plugin ``name``'s ``line`` on one worker."""

    def __init__(
        self, line: str, label: str, name: str, kernel_place: str | None
    ) -> None:
        self._spec = parse(line)
        self._label, self._name, self._kernel = label, name, kernel_place
        self._lock = threading.Lock()
        self._closing = False
        self._manager: Manager | None = None
        self._claims: list[port_claims.Claim] = []

    def open(self, worker: str) -> WorkerShare:
        """Open it; how it went, in one line naming ``worker`` when it failed."""
        try:
            return self._open(worker)
        except Exception as exc:  # noqa: BLE001  # the worker's failure, in one line
            with self._lock:
                closing = self._closing
            self.close()
            if closing:  # closed under it: no failure of its own
                return WorkerShare(worker, "ended")
            why = (
                exc if isinstance(exc, TunnelError) else f"{type(exc).__name__}: {exc}"
            )
            return WorkerShare(worker, "failed", f"worker {worker}: {why}")

    def _open(self, worker: str) -> WorkerShare:
        listens = [
            (_at(f.listen_host), f.listen_port or 0) for f in self._spec.forwards
        ]
        if self._kernel == place.here() and all(_listening(*at) for at in listens):
            return WorkerShare(worker, "up", reused=True)  # the kernel's own forward
        spec = self._spec
        if self._claim(listens):
            spec = _reuse_port(spec)
        manager = Manager()
        with self._lock:
            closing = self._closing
            if not closing:
                self._manager = manager  # close() closes it from now on
        if closing:
            manager.close()
            self._release()
            return WorkerShare(worker, "ended")
        # The line's forwards only: the worker's ssh config may name others
        # (LocalForward), which the kernel did not share.
        tunnel = manager.open(spec.text, name=self._label, config_forwards=False)
        for forward in tunnel.snapshot().forwards:
            if forward.state == "failed":
                raise WorkerError(f"{forward.spec}: {forward.error}")
        with self._lock:
            if self._closing:  # close() ran meanwhile and closed it
                return WorkerShare(worker, "ended")
        return WorkerShare(worker, "up")

    def _claim(self, listens: list[tuple[str, int]]) -> bool:
        """Claim every port for this plugin; False where ports cannot be
        shared here (then they are not)."""
        for address, port in listens:
            try:
                held = port_claims.claim(address, port, self._name)
            except port_claims.PortTaken as exc:
                raise WorkerError(
                    f"port {port} on this machine serves another tunnel's workers"
                    f" ({exc.owner}): unregister that plugin, or share a tunnel"
                    " on other ports"
                ) from None
            if held is None:
                self._release()
                return False
            self._claims.append(held)
        return True

    def close(self) -> None:
        """Close it (at once, or as soon as an open under way has made it)."""
        with self._lock:
            self._closing = True
            manager, self._manager = self._manager, None
        if manager is not None:
            manager.close()
        self._release()

    def _release(self) -> None:
        claims, self._claims = self._claims, []
        for held in claims:
            held.release()


def _at(host: str | None) -> str:
    return _LOOPBACK.get(host, host) or "127.0.0.1"


def _reuse_port(spec: TunnelSpec) -> TunnelSpec:
    if spec.option("ReusePort") is not None:
        return spec  # the line says; the first one given wins, as in ssh
    return replace(spec, options=(*spec.options, ("ReusePort", "yes")))


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), 2):
            return True
    except OSError:
        return False
