"""Admitting a listening forward's clients: no thread of their own until their channel is open.

Every client a ``-L`` or ``-D`` forward accepts waits here, and one thread
per forward does all of the waiting (measured before: a thread per client,
each polling its channel open every 0.1 s, and a burst of 8,000 short
connections grew the engine to 4,000 threads and took a minute to drain):

- a SOCKS client is read as its bytes arrive, one selector for all of
  them, its whole handshake within one deadline;
- at most :data:`LIMIT` channel opens are in flight; the others queue in
  arrival order, each costing a socket and nothing else;
- just before its open, a client that has given up already (reset, or
  closed without sending a byte) is dropped without one: the server would
  connect to the target for nobody.  One that sent data and half-closed is
  carried, as ssh does;
- each client has one deadline from its arrival, the time it queued
  included, so a server that stops answering fails clients in 30 s, not
  30 s times the length of the queue;
- answers come back from paramiko's thread (``ssh/opens.py``) through an
  inbox, and only then does the client get the relay's threads.

Why 64 in flight: opens complete at about LIMIT per round trip to the
server, so 64 carries a burst of 800 connections a second over an 80 ms
link (and many times that nearby); more would only let a slow or
unreachable target hold more sockets on the server and more queued
clients in the dark.  It also bounds the threads where an open must block
(paramiko's own open, or waiting out a reconnect).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import selectors
import threading
import time
from collections import deque
from typing import Any

from ..errors import TunnelError
from ..platform import sockets
from .arrival import Arrival, Failed, describe

LIMIT = 64
# While stopping, how often the thread looks for the answers still owed.
WIND_DOWN_POLL = 0.1

logger = logging.getLogger("nbtunnel.forward")

_NEW = object()


class _Deadlines:
    """Each waiting client's deadline, soonest first; a client whose
    deadline moved, or who is done, is skipped when its entry comes up."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Arrival]] = []
        self._order = itertools.count()

    def watch(self, arrival: Arrival) -> None:
        heapq.heappush(self._heap, (arrival.deadline, next(self._order), arrival))

    def _live(self, entry: tuple[float, int, Arrival]) -> bool:
        deadline, _, arrival = entry
        return arrival.stage != "done" and arrival.deadline == deadline

    def timeout(self) -> float | None:
        """Until the soonest deadline (None: there is none)."""
        while self._heap and not self._live(self._heap[0]):
            heapq.heappop(self._heap)
        if not self._heap:
            return None
        return max(0.0, self._heap[0][0] - time.monotonic())

    def passed(self, now: float) -> list[Arrival]:
        """The clients whose deadline has passed by ``now``."""
        out = []
        while self._heap and self._heap[0][0] <= now:
            entry = heapq.heappop(self._heap)
            if self._live(entry):
                out.append(entry[2])
        return out


class Admission:
    """The thread admitting one forward's clients (see the module's docstring)."""

    def __init__(self, name: str, limit: int = LIMIT) -> None:
        self._name = name
        self._limit = limit
        self._lock = threading.Lock()
        self._inbox: deque[tuple[Arrival, Any]] = deque()
        self._stopping = False
        self._selector: selectors.BaseSelector | None = None
        self._waker: sockets.Waker | None = None
        self._thread: threading.Thread | None = None
        # Only the admission thread touches these.
        self._reading: set[Arrival] = set()
        self._queue: deque[Arrival] = deque()
        self._opening: set[Arrival] = set()
        self._deadlines = _Deadlines()

    def start(self) -> None:
        """Start the thread; raises OSError (no descriptors for its selector)
        or RuntimeError (no thread), leaving nothing open."""
        try:
            self._waker = sockets.Waker()
            self._selector = selectors.DefaultSelector()
            self._selector.register(self._waker, selectors.EVENT_READ)
            thread = threading.Thread(
                target=self._run, name=f"nbtunnel-admit-{self._name}", daemon=True
            )
            thread.start()
        except BaseException:
            self._close()
            raise
        self._thread = thread

    def admit(self, arrival: Arrival) -> bool:
        """Take a new client (from the accept thread); False once stopping."""
        with self._lock:
            if self._stopping:
                return False
            self._inbox.append((arrival, _NEW))
        self._wake()
        return True

    def _answer(self, arrival: Arrival, result: Any) -> None:
        # paramiko's thread, maybe holding the transport's lock: hand over.
        with self._lock:
            self._inbox.append((arrival, result))
        self._wake()

    def _wake(self) -> None:
        waker = self._waker
        if waker is not None:
            waker.wake()  # never blocks, never raises

    def stopping(self) -> None:
        """Take no new client and close every one still waiting (none gets a
        channel; a late one is closed), without waiting for the thread: an
        open it is sending may wait on the SSH connection until that is
        closed. Idempotent."""
        with self._lock:
            self._stopping = True
        self._wake()

    def stop(self) -> None:
        """:meth:`stopping`, then join the thread. Idempotent."""
        self.stopping()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._close()

    def _close(self) -> None:
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        if self._waker is not None:
            self._waker.close()
            self._waker = None

    # -- the thread ---------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                if self._turn():
                    return
            except Exception:  # the loop must outlive any bug
                logger.exception("%s: admitting clients failed", self._name)
                time.sleep(0.05)

    def _turn(self) -> bool:
        """Wait for something to do and do it; True once stopped with no
        answer still owed."""
        selector = self._selector
        assert selector is not None
        timeout = self._deadlines.timeout()
        if self._stopping:
            timeout = WIND_DOWN_POLL  # answers still owed: a woken poll
        for key, _ in selector.select(timeout):
            if key.data is None:
                assert self._waker is not None
                self._waker.drain()
            else:
                self._readable(key.data)
        with self._lock:
            inbox, self._inbox = self._inbox, deque()
            stopping = self._stopping
        for arrival, what in inbox:
            # Each on its own: one that raises must not lose the others.
            if what is _NEW:
                self._step(arrival, self._arrive, arrival)
            else:
                self._step(arrival, self._answered, arrival, what)
        if stopping:
            return self._wind_down()
        self._expire(time.monotonic())
        self._launch()
        return False

    def _arrive(self, arrival: Arrival) -> None:
        self._deadlines.watch(arrival)
        if not arrival.reads:
            self._enqueue(arrival)
            return
        assert self._selector is not None
        try:
            self._selector.register(arrival.sock, selectors.EVENT_READ, arrival)
        except (OSError, ValueError) as exc:
            self._finish(arrival)
            arrival.fail(f"could not watch this connection: {exc}")
            return
        arrival.stage = "reading"
        self._reading.add(arrival)

    def _enqueue(self, arrival: Arrival) -> None:
        arrival.stage = "queued"
        self._queue.append(arrival)

    def _readable(self, arrival: Arrival) -> None:
        if arrival.stage != "reading":
            return
        try:
            ready = arrival.read()
        except (BlockingIOError, InterruptedError):
            return
        except BaseException as exc:  # noqa: BLE001 - see _ended
            self._ended(arrival, exc)
            return
        if ready:
            self._finish(arrival)  # no longer read: unregistered
            self._deadlines.watch(arrival)
            self._enqueue(arrival)

    def _launch(self) -> None:
        """Start opens, in arrival order, while there is room in flight."""
        while self._queue and len(self._opening) < self._limit:
            arrival = self._queue.popleft()
            if arrival.stage != "queued":
                continue  # expired in the queue
            try:
                gone = arrival.gone()
                if gone is not None:
                    self._finish(arrival)
                    arrival.end(gone)
                    continue
                arrival.stage = "opening"
                self._opening.add(arrival)

                def done(result: Any, arrival: Arrival = arrival) -> None:
                    self._answer(arrival, result)

                arrival.opening = arrival.open(done)
            except BaseException as exc:  # noqa: BLE001 - see _ended
                self._opening.discard(arrival)
                if isinstance(exc, (TunnelError, RuntimeError)):
                    self._finish(arrival)
                    self._step(arrival, arrival.refused, exc)
                else:
                    self._ended(arrival, exc)

    def _answered(self, arrival: Arrival, result: Any) -> None:
        self._opening.discard(arrival)
        if arrival.stage != "opening":  # cannot happen: given up, nobody answers
            if not isinstance(result, BaseException):
                with contextlib.suppress(Exception):
                    result.close()
            return
        self._finish(arrival)
        if isinstance(result, BaseException):
            self._step(arrival, arrival.refused, result)
        else:
            self._step(arrival, arrival.opened, result)

    def _expire(self, now: float) -> None:
        for arrival in self._deadlines.passed(now):
            stage = arrival.stage
            if stage == "opening":
                assert arrival.opening is not None
                if not arrival.opening.give_up():
                    continue  # answered just now: the answer is on its way
                self._opening.discard(arrival)
            self._finish(arrival)
            self._step(arrival, arrival.expired, stage)

    def _wind_down(self) -> bool:
        for arrival in [*self._reading, *self._queue]:
            if arrival.stage != "done":
                self._finish(arrival)
                self._step(arrival, arrival.end)
        self._queue.clear()
        for arrival in list(self._opening):
            assert arrival.opening is not None
            if arrival.opening.give_up():
                self._opening.discard(arrival)
                self._finish(arrival)
                self._step(arrival, arrival.end)
        # Those not given up were answered just now: their answer is in
        # the inbox or on its way, and is closed when it comes.
        return not self._opening

    def _finish(self, arrival: Arrival) -> None:
        """It leaves the admission: no longer read, queued, opening or timed."""
        self._opening.discard(arrival)
        if arrival in self._reading:
            self._reading.discard(arrival)
            if self._selector is not None:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.unregister(arrival.sock)
        arrival.stage = "done"

    def _step(self, arrival: Arrival, step: Any, *args: Any) -> None:
        """A last step of ``arrival``, whose own errors end it all the same."""
        try:
            step(*args)
        except BaseException as exc:  # noqa: BLE001 - see _ended
            self._ended(arrival, exc)

    def _ended(self, arrival: Arrival, exc: BaseException) -> None:
        """A step raised: the client is closed; a failure unless it went away."""
        self._finish(arrival)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise exc
        with contextlib.suppress(Exception):
            if isinstance(exc, Failed):
                arrival.fail(str(exc))
            elif isinstance(exc, OSError):
                arrival.end()
            else:
                arrival.fail(describe(exc))
