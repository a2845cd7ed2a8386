"""Channel opens that no thread waits for.

paramiko's ``open_channel()`` parks its caller on a ``threading.Event``,
woken every 0.1 s to look at the clock, until the server answers; a burst
of short connections then costs a waiting thread each (measured: thousands
of them, and a forward that took a minute to drain).  Here the event
paramiko keeps for an open (``Transport.channel_events[chanid]``) is a
:class:`Pending`, whose ``set()`` calls back instead: paramiko's thread sets
it on the server's OPEN_CONFIRMATION (``_parse_channel_open_success``) or
OPEN_FAILURE (``Transport._parse_channel_open_failure``), and sets every one
when the SSH connection dies (``Transport.run``), so every open ends with
one call of ``on_done`` and nobody waits for it.  Whoever opened keeps the
deadline and calls :meth:`Pending.give_up` when it passes; a confirmation
that arrives after that is closed (``Transport._abandoned``), so no channel
is left open on the server with nobody reading it.

Where the gate cannot build the open itself (``probe`` found a name
missing), :class:`Threaded` runs paramiko's own blocking ``open_channel``
in a thread of its own: the same interface, a thread per open in flight,
which the caller bounds.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any, Protocol

# Gets the channel, or the exception that ended the open.  It runs in
# paramiko's thread, possibly holding the transport's lock: it must return
# at once and never wait for, or call into, the transport.
Done = Callable[[Any], None]


class Opening(Protocol):
    """A channel open in flight."""

    def give_up(self) -> bool:
        """Stop waiting: True if it had not ended (``on_done`` will then never
        be called, and a late channel is closed), False if it just did (the
        call of ``on_done`` is on its way, if not made already)."""
        ...


class Outcome(Protocol):
    """What a Pending asks of its transport once it is set."""

    def _outcome(self, chanid: int) -> Any: ...
    def _give_up(self, pending: Pending) -> bool: ...


class Pending(threading.Event):
    """paramiko's event for one open: set, it hands the answer to ``on_done``.

    An Event still (paramiko may wait on it, or ask is_set()), set at most
    once in effect: by the answer, by the SSH connection's death, or not at
    all once given up.
    """

    def __init__(self, transport: Outcome, chanid: int, on_done: Done) -> None:
        super().__init__()
        self.chanid = chanid
        self._transport = transport
        self._on_done = on_done
        # Taken inside the transport's lock, never the other way round.
        self.lock = threading.Lock()
        self.over = False  # answered, or given up
        self.chan: Any = None  # the channel being opened, held here

    def set(self) -> None:
        super().set()
        with self.lock:
            if self.over:
                return
            self.over = True
        self._on_done(self._transport._outcome(self.chanid))

    def give_up(self) -> bool:
        return self._transport._give_up(self)


class Threaded:
    """An open that blocks (``call``), run in a thread of its own.

    Raises RuntimeError when the thread cannot start (a process limit), so
    the caller fails that one connection.  A channel that ``call`` returns
    after :meth:`give_up` is closed.
    """

    def __init__(self, call: Callable[[], Any], on_done: Done, name: str) -> None:
        self._call = call
        self._on_done = on_done
        self._lock = threading.Lock()
        self._over = False
        thread = threading.Thread(target=self._run, name=name, daemon=True)
        thread.start()

    def _run(self) -> None:
        result: Any
        try:
            result = self._call()
        except Exception as exc:  # noqa: BLE001 - handed to on_done, whatever it is
            result = exc
        with self._lock:
            late, self._over = self._over, True
        if not late:
            self._on_done(result)
        elif not isinstance(result, BaseException):
            with contextlib.suppress(Exception):
                result.close()

    def give_up(self) -> bool:
        with self._lock:
            if self._over:
                return False
            self._over = True
            return True
