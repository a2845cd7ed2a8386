"""Getting a tunnel a new SSH connection after it lost one: tries with back-off
(also the pace at which its -R forwards ask again for a port the server holds)."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

from ..errors import AuthenticationError, ConnectError, HostKeyError
from ..settings.resolve import ConnectSettings
from ..ssh.connection import Connection
from ..ssh.trace import QUIET, Trace
from .pool import Attempt, Pool

# The first reconnect waits about this long (a restarted server is often
# back at once); each failure doubles the wait, up to ReconnectMaxDelay.
FIRST_DELAY = 0.25


def backoff(failures: int, cap: float) -> float:
    """Seconds to wait after ``failures`` failed tries: exponential, capped, jittered.

    Half the wait is fixed and half random ("equal jitter"), so tunnels
    that lost one server do not all come back to it in the same instant.
    """
    base = min(max(cap, FIRST_DELAY), FIRST_DELAY * 2.0 ** min(failures, 32))
    return base / 2 + random.uniform(0, base / 2)


class Reconnector:
    """Tries for a new connection, in a thread of its own, until one works,
    the tries run out (ReconnectAttempts) or :meth:`halt`.

    It says how it went through its callbacks: ``restore(connection, tries)``
    with the new connection, ``fail(why)`` when it gives up, and
    ``event(kind, **data)`` for each failed try.  One per tunnel; each loss
    of the connection starts it again.
    """

    def __init__(
        self,
        pool: Pool,
        settings: ConnectSettings,
        *,
        name: str,
        restore: Callable[[Connection, int], None],
        fail: Callable[[str], None],
        event: Callable[..., None],
        trace: Trace = QUIET,
    ) -> None:
        self._pool, self._settings, self._name = pool, settings, name
        self._trace = trace  # each try's steps, for the tunnel's -v
        self._restore, self._fail, self._event = restore, fail, event  # its reports
        self._lock = threading.Lock()
        self._halted = False
        # Wakes the thread from its back-off to stop.
        self._halt = threading.Event()
        self._attempt: Attempt | None = None
        self._thread: threading.Thread | None = None

    def start(self, dead: Connection) -> None:
        """Let go of ``dead`` and try for a new connection, in a new thread."""
        thread = threading.Thread(
            target=self._run, args=(dead,), name=self._name, daemon=True
        )
        with self._lock:
            self._thread = thread
        thread.start()

    def _run(self, dead: Connection) -> None:
        self._pool.release(dead, self._trace)  # the tunnel's share of it
        target = self._settings.target
        failures = 0
        delay = backoff(0, self._settings.reconnect_max_delay)
        while not self._halt.wait(delay):
            attempt = Attempt()
            # Under the lock: either halt() sees this try and cancels it, or
            # this sees the halt and does not begin it.
            with self._lock:
                if self._halted:
                    return
                self._attempt = attempt
            try:
                # No prompt: a login that needs a person is not retried
                # behind their back, it fails the tunnel below.
                self._trace(1, "Reconnecting to %s (try %d)", target, failures + 1)
                connection = self._pool.acquire(
                    self._settings, None, attempt, trace=self._trace
                )
            except (AuthenticationError, HostKeyError) as exc:
                self._fail(f"reconnecting to {target} failed: {exc}")
                return
            except ConnectError as exc:
                if self._halt.is_set():
                    return  # halt() abandoned this try: nothing to say
                failures += 1
                limit = self._settings.reconnect_attempts
                if limit and failures >= limit:
                    self._fail(
                        f"could not reconnect to {target} in "
                        f"{failures} tries (ReconnectAttempts {limit}): {exc}"
                    )
                    return
                delay = backoff(failures, self._settings.reconnect_max_delay)
                self._event(
                    "reconnect_failed",
                    attempt=failures,
                    error=str(exc),
                    retry_in=round(delay, 2),
                )
                continue
            finally:
                self._attempt = None
            self._restore(connection, failures + 1)
            return

    def retry_wait(self, refusals: int) -> float | None:
        """How long a forward waits before asking again for what the server
        refused ``refusals`` times in a row after a reconnect (a -R port the
        old session still holds): the same back-off as a connection's tries,
        None once ReconnectAttempts of them are spent."""
        limit = self._settings.reconnect_attempts
        if limit and refusals >= limit:
            return None
        return backoff(refusals, self._settings.reconnect_max_delay)

    def halt(self) -> None:
        """Stop trying: abandon the try under way and join the thread. Idempotent."""
        with self._lock:
            self._halted = True
            attempt, thread = self._attempt, self._thread
        self._halt.set()
        if attempt is not None:
            attempt.cancel()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
