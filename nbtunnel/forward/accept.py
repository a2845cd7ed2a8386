"""A listener's accept loop, which serves on through every shortage of the system.

Out of descriptors (EMFILE, ENFILE) or socket memory (ENOBUFS, ENOMEM),
``accept()`` fails and the client stays queued in the kernel's backlog.
The loop then backs off (10 ms doubling to 1 s) instead of spinning, says
so once per shortage rather than at every try, and retries.  While the
queue moves (a descriptor frees now and then and the next client is
served) every client waits its turn, so a shortage that clears loses
nobody.  When it has not moved for ``PATIENCE`` (a shortage the forward's
own long-lived clients cause does not clear), each try also takes every
queued client with the process's spare descriptor and refuses it with a
reset, counted on the forward: clients learn within a second or so and
retry, as they do with any refused connection, instead of hanging for
ever.  A client the forward cannot take (its thread would not start) is
refused and counted the same way.  Nothing a client or the system does
ends the loop; only :meth:`AcceptLoop.close`.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from ..platform import limits, sockets

logger = logging.getLogger("nbtunnel.forward")

Accepted = Callable[[socket.socket, str], None]
Refused = Callable[[str], None]

BACKOFF_FIRST = 0.01
BACKOFF_MAX = 1.0
# How long the queue of waiting clients may stand still before they are
# refused: longer than a burst of short connections takes to drain, far
# shorter than a client's own connect or read timeout.
PATIENCE = 3.0
# A spell of trouble is over (and said to be) once this long passed
# without a failure: a queue that moves one client at a time is one spell.
QUIET = 1.0


def refuse(conn: socket.socket) -> None:
    """Close ``conn`` with a reset: the client learns at once it was refused."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


class _Spell:
    """One spell of trouble, logged when it begins and when it is over,
    never at each failure (a try every 10 ms would flood the log)."""

    def __init__(self, name: str, what: str) -> None:
        self._name = name
        self._what = what
        self.since: float | None = None
        self._last = 0.0
        self._served = 0.0  # the last success, while a spell is on
        self._why = ""
        self.refused = 0

    def failed(self, why: str) -> None:
        now = time.monotonic()
        # Served after the last failure and quiet since (an idle forward
        # says no more): that spell ended; this is a new one.
        served_since = self.since is not None and self._served > self._last
        if served_since and now - self._last >= QUIET:
            self._over()
        self._last = now
        if self.since is None:
            self.since, self._why, self.refused = now, why, 0
            logger.warning("%s: %s: %s", self._name, self._what, why)

    def ok(self) -> None:
        if self.since is None:
            return
        now = time.monotonic()
        self._served = now
        if now - self._last >= QUIET:
            self._over()

    def _over(self) -> None:
        assert self.since is not None
        logger.warning(
            "%s: serving again after %.1f s (%s); %d clients were refused meanwhile",
            self._name,
            self._last - self.since,
            self._why,
            self.refused,
        )
        self.since = None


class AcceptLoop:
    """The thread accepting on a listener's sockets; see the module's docstring.

    Its selector and wake-up are made here, in the caller's thread, so that
    a process out of descriptors fails the forward's start with the reason
    (OSError) instead of killing the thread later; :meth:`start` raises
    RuntimeError when the thread cannot start.
    """

    def __init__(
        self,
        socks: list[socket.socket],
        name: str,
        on_accept: Accepted,
        on_refused: Refused | None = None,
    ) -> None:
        self._socks = list(socks)
        self._name = name
        self._on_accept = on_accept
        self._on_refused = on_refused or (lambda why: None)
        self._closing = threading.Event()
        # Taken now, while there are descriptors to take.
        limits.RESERVE.hold()
        # A selector with a wake-up, rather than closing the socket under
        # accept(): that does not wake accept() on a unix socket.
        self._selector = selectors.DefaultSelector()
        try:
            self._waker = sockets.Waker()
        except BaseException:
            self._selector.close()
            raise
        try:
            self._selector.register(self._waker, selectors.EVENT_READ)
            for sock in self._socks:
                sock.setblocking(False)
                self._selector.register(sock, selectors.EVENT_READ)
        except BaseException:
            self._selector.close()
            self._waker.close()
            raise
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False
        # Only the loop's thread touches these.
        self._short = _Spell(name, "cannot accept new clients (they wait their turn)")
        self._failing = _Spell(name, "refusing new clients")
        self._stuck_since: float | None = None  # no client served since
        self._delay = BACKOFF_FIRST

    def start(self) -> None:
        self._thread.start()
        self._started = True

    def close(self) -> None:
        """Stop the thread (if it started) and close the selector. Idempotent."""
        self._closing.set()
        self._waker.wake()
        if self._started:
            self._thread.join()
            self._started = False
        self._selector.close()
        self._waker.close()

    # -- the thread ---------------------------------------------------------

    def _run(self) -> None:
        while not self._closing.is_set():
            delay = 0.0
            try:
                for key, _ in self._selector.select():
                    if key.fileobj is self._waker or self._closing.is_set():
                        return
                    listening = key.fileobj
                    assert isinstance(listening, socket.socket)
                    delay = max(delay, self._accept(listening))
            except Exception as exc:
                logger.exception("%s: the accept loop failed", self._name)
                delay = self._backoff(f"{type(exc).__name__}: {exc}")
            if delay:
                self._closing.wait(delay)

    def _accept(self, listening: socket.socket) -> float:
        """Accept one client; returns how long to back off (0: not at all)."""
        try:
            conn, peer = self._accept_now(listening)
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return 0.0
        except OSError as exc:
            why = limits.shortage(exc) or f"accept failed: {exc}"
            delay = self._backoff(why)
            assert self._stuck_since is not None
            if time.monotonic() - self._stuck_since >= PATIENCE:
                self._refuse_queued(listening, why)
            return delay
        self._hand_on(conn, peer)
        return 0.0

    def _accept_now(self, listening: socket.socket) -> tuple[socket.socket, Any]:
        if self._stuck_since is None:
            return listening.accept()
        # In a shortage: the spare first, should another thread have got
        # it, and no other listener's try in the middle of a refusal.
        with limits.RESERVE.kept():
            return listening.accept()

    def _backoff(self, why: str) -> float:
        """Accepting failed: back off longer each time the queue stays stuck."""
        self._short.failed(why)
        if self._stuck_since is None:
            self._stuck_since, self._delay = time.monotonic(), BACKOFF_FIRST
        else:
            self._delay = min(self._delay * 2, BACKOFF_MAX)
        return self._delay

    def _refuse_queued(self, listening: socket.socket, why: str) -> None:
        """Refuse each queued client, counted, with the spare descriptor;
        serve the first one a freed descriptor lets us accept after all."""
        message = f"refused a client after {PATIENCE:g} s in the queue: {why}"
        drained: list[bool] = []

        def take() -> bool:
            try:
                conn, _ = listening.accept()
            except (BlockingIOError, InterruptedError):
                drained.append(True)  # nobody is queued any more
                return False
            except OSError:
                return False  # the spare went to another thread
            refuse(conn)
            return True

        while not self._closing.is_set():
            try:
                conn, peer = self._accept_now(listening)
            except OSError as exc:
                if limits.shortage(exc) is None or not limits.RESERVE.spend(take):
                    if drained:
                        # An empty queue stands still by no fault: the next
                        # client waits PATIENCE like the first one did.
                        self._stuck_since = None
                    return
                self._short.refused += 1
                self._on_refused(message)
                continue
            self._hand_on(conn, peer)  # the shortage is over after all
            return

    def _hand_on(self, conn: socket.socket, peer: object) -> None:
        self._stuck_since = None
        self._short.ok()
        try:
            conn.setblocking(True)
            origin = peer[0] if isinstance(peer, tuple) else "unix"
            self._on_accept(conn, str(origin))
        except Exception as exc:  # noqa: BLE001 - one client fails, not the listener
            # The forward could not take it (a thread that would not start,
            # under a pids limit): refused at once and counted, never left
            # to hang.
            refuse(conn)
            why = limits.shortage(exc) or f"{type(exc).__name__}: {exc}"
            self._failing.failed(why)
            self._failing.refused += 1
            self._on_refused(f"refused a client: {why}")
            return
        self._failing.ok()
