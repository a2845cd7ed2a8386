"""Noticing a dead server: ``ServerAliveInterval`` and TCP keepalive.

:class:`Watchdog` waits, in a thread of its own, for a connection's
transport to end, closes it when the server stops answering as ssh's
``ServerAliveInterval`` and ``ServerAliveCountMax`` mean it, and then tells
whoever asked why it ended.  :func:`tcp_keepalive` sets the kernel's
keepalive on the same schedule, for a peer that is gone altogether.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

import paramiko

from .._paramiko import probe
from .._paramiko.transport import Transport
from ..platform import sockets
from .printable import escaped


class Watchdog:
    """Watches one connection's transport until it ends, and says why it did."""

    def __init__(self, host: str, interval: int, count_max: int) -> None:
        # For the threads' names.
        self._host = host
        self._interval = interval
        self._count_max = count_max
        # Told when the connection ends, from a thread that waits for it.
        self._lost_lock = threading.Lock()
        self._on_lost: list[Callable[[], None]] = []
        self._watcher: threading.Thread | None = None
        self._prober: threading.Thread | None = None
        # Why it ended, once it has: said by the tunnels that lose it.
        self._lost_reason: str | None = None

    def start(self, transport: Transport) -> None:
        """Start watching ``transport`` (connected and logged in)."""
        self._watcher = threading.Thread(
            target=self._watch,
            args=(transport,),
            name=f"nbtunnel-watch-{self._host}",
            daemon=True,
        )
        self._watcher.start()

    def on_lost(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (once, from another thread) when the connection ends,
        for whatever reason; returns what unsubscribes it."""
        with self._lost_lock:
            self._on_lost.append(callback)

        def cancel() -> None:
            with self._lost_lock:
                if callback in self._on_lost:
                    self._on_lost.remove(callback)

        return cancel

    @property
    def lost_reason(self) -> str:
        """Why the connection ended, in words, once it has."""
        return self._lost_reason or "the connection was closed"

    def join(self) -> None:
        """Wait for the watching threads (after the transport was closed)."""
        for thread in (self._watcher, self._prober):
            if thread is not None and thread is not threading.current_thread():
                thread.join(5.0)
        self._watcher = self._prober = None

    def _watch(self, transport: Transport) -> None:
        if self._interval > 0 and probe.available("keepalive"):
            self._check_alive(transport, self._interval, self._count_max)
        elif self._interval > 0:
            # This paramiko cannot match a probe's reply (probe.why_not):
            # its own keepalive, which wants none, and TCP keepalive on the
            # same schedule (tcp_keepalive) notices a dead server instead.
            transport.set_keepalive(self._interval)
        transport.join()
        if self._lost_reason is None:
            exc = transport.get_exception()
            self._lost_reason = (
                "the server closed the connection"
                if exc is None or isinstance(exc, EOFError)
                else escaped(str(exc) or type(exc).__name__)
            )
        with self._lost_lock:
            callbacks, self._on_lost = self._on_lost, []
        for callback in callbacks:
            callback()

    def _check_alive(self, transport: Transport, interval: int, count_max: int) -> None:
        """ServerAliveInterval and ServerAliveCountMax as ssh means them.

        After ``interval`` seconds without a packet from the server, a probe
        that wants a reply; another each ``interval`` after that; when
        ``count_max`` probes went unanswered, the server counts as dead and
        the connection is closed.  Anything the server sends counts as an
        answer.  Probes are sent from a thread of their own: a send can
        block on a dead network, and this check must not.
        """
        tick = min(1.0, interval / 4)
        probes, heard = 0, transport.last_received
        while transport.is_active():
            transport.join(tick)
            if transport.last_received != heard:
                probes, heard = 0, transport.last_received
            silent = time.monotonic() - heard
            if not transport.is_active() or silent < interval * (probes + 1):
                continue
            if probes >= count_max:
                self._lost_reason = (
                    f"the server did not answer for {silent:.0f} s "
                    f"(ServerAliveInterval {interval}, ServerAliveCountMax "
                    f"{count_max}); the network or the server is down"
                )
                transport.close()
                return
            probes += 1
            if self._prober is None or not self._prober.is_alive():
                self._prober = threading.Thread(
                    target=_probe,
                    args=(transport,),
                    name=f"nbtunnel-alive-{self._host}",
                    daemon=True,
                )
                try:
                    self._prober.start()
                except RuntimeError:
                    # Out of threads (a pids limit): this probe is not sent,
                    # but the watch goes on, or nobody would hear of the loss.
                    self._prober = None


def _probe(transport: Transport) -> None:
    # A failed send means the connection is ending, which the check sees.
    with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
        transport.probe()


def tcp_keepalive(sock: socket.socket, interval: int, count_max: int) -> None:
    """TCP keepalive on the SSH socket, on ServerAliveInterval's schedule.

    It notices a peer that is gone (a rebooted host answers with a reset)
    even while the SSH layer is busy or turned off.
    """
    if interval <= 0:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return
    sockets.keepalive(sock, idle=interval, interval=interval, count=max(1, count_max))
