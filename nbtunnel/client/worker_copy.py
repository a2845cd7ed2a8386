"""One Dask worker's copy of a shared tunnel: what opens it, holds it and
closes it (``nbtunnel.dask`` runs it from the worker plugin's setup and
teardown, in a thread of the worker).

- On the kernel's own loopback (a ``LocalCluster``) the kernel's forward is
  already there: it is used as it is.
- Elsewhere the worker opens the line with its own Manager (an engine
  process that ends with the worker), only the line's forwards.
- Several workers of one machine each listen on the port (ReusePort) once
  they have claimed it for this plugin (platform.port_claims): a port that
  another tunnel's workers hold is refused, never shared with them; where
  nothing can be claimed, nothing is shared.
- Closing may come while the open still logs in (the worker closing, the
  plugin unregistered): what the open makes is then closed as it is made.
"""

from __future__ import annotations

import errno
import socket
import threading
from dataclasses import replace

from ..errors import TunnelError, WorkerError
from ..grammar.spec import parse
from ..platform import place, port_claims, sockets
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
        if self._kernel == place.here() and all(_taken(*at) for at in listens):
            return WorkerShare(worker, "up", reused=True)  # the kernel's own forward
        # Shared with this machine's other workers only once claimed for
        # this plugin; a ReusePort in the line itself is not taken as is.
        shared = self._claim([port for _, port in listens])
        options = [o for o in self._spec.options if o[0].lower() != "reuseport"]
        options.append(("ReusePort", "yes" if shared else "no"))
        spec = replace(self._spec, options=tuple(options))
        manager = Manager()
        with self._lock:
            closing = self._closing
            if not closing:
                self._manager = manager  # close() closes it from now on
        if closing:
            return self._ended(worker, manager)
        # The line's forwards only: the worker's ssh config may name others
        # (LocalForward), which the kernel did not share.
        tunnel = manager.open(spec.text, name=self._label, config_forwards=False)
        for forward in tunnel.snapshot().forwards:
            if forward.state == "failed":
                raise WorkerError(f"{forward.spec}: {forward.error}")
        with self._lock:
            closing = self._closing
        if closing:  # close() ran meanwhile, maybe before the engine started
            return self._ended(worker, manager)
        return WorkerShare(worker, "up")

    def _ended(self, worker: str, manager: Manager) -> WorkerShare:
        try:
            manager.close()
        finally:
            self._release()
        return WorkerShare(worker, "ended")

    def _claim(self, ports: list[int]) -> bool:
        """Claim every port for this plugin; False where ports cannot be
        shared here (then they are not)."""
        for port in ports:
            try:
                held = port_claims.claim(port, self._name)
            except port_claims.PortTaken as exc:
                raise WorkerError(
                    f"port {port} on this machine serves another tunnel's workers"
                    f" ({exc.owner}): unregister that plugin, or share a tunnel"
                    " on other ports"
                ) from None
            if held is None:
                self._release()
                return False
            with self._lock:
                self._claims.append(held)
                closing = self._closing
            if closing:  # close() ran meanwhile: let go of what it missed
                self._release()
                return False
        return True

    def close(self) -> None:
        """Close it (at once, or as soon as an open under way has made it)."""
        with self._lock:
            self._closing = True
            manager, self._manager = self._manager, None
        try:
            if manager is not None:
                manager.close()
        finally:
            self._release()

    def _release(self) -> None:
        with self._lock:
            claims, self._claims = self._claims, []
        for held in claims:
            held.release()


def _at(host: str | None) -> str:
    return _LOOPBACK.get(host, host) or "127.0.0.1"


def _taken(host: str, port: int) -> bool:
    """Whether something listens on ``host:port`` here, found by binding it
    as a listener would (a connection would reach the kernel's target)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            sockets.exclusive_address(probe)
            probe.bind((host, port))
    except OSError as exc:
        return exc.errno == errno.EADDRINUSE
    return False
