"""One accepted client of a listening forward, as its admission sees it.

What each step of a client's way to its channel is (read, checked, opened,
answered, expired, ended), which ``admission`` drives and each kind of
forward fills in (``local.LocalClient``, ``dynamic.SocksClient``), and the
lines that say why one ended.
"""

from __future__ import annotations

import socket
from typing import Any, Literal, Protocol

from ..errors import TunnelError

Stage = Literal["new", "reading", "queued", "opening", "done"]


class Opening(Protocol):
    """A channel open in flight (``ssh/opens.py``)."""

    def give_up(self) -> bool: ...


class Failed(Exception):
    """A step of an Arrival ends its client with this one-line reason (counted)."""


def thread_failure(exc: BaseException) -> str:
    """The counted reason when a connection's thread cannot start."""
    return f"could not start a thread for this connection: {exc} (a process limit?)"


def describe(exc: BaseException) -> str:
    """One line for an exception that ended a client's open."""
    if isinstance(exc, TunnelError):
        return str(exc)
    if isinstance(exc, RuntimeError):  # the only one an open raises: no thread
        return thread_failure(exc)
    return f"the connection failed unexpectedly: {type(exc).__name__}: {exc}"


class Arrival:
    """One accepted client until its channel is open; each kind of forward
    says what to do at each step (every step runs in the admission thread
    and must not block: the socket is non-blocking meanwhile).

    A step may raise Failed (the client is told if it can be, closed and
    counted), OSError (the client went away: closed, not a failure) or
    anything else (a bug: closed and counted as unexpected).
    """

    # Whether it must be read before it can be opened (a SOCKS handshake).
    reads = False

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.deadline = deadline
        self.stage: Stage = "new"
        self.opening: Opening | None = None

    def read(self) -> bool:
        """Take what the client sent; True once it can be opened (and its
        deadline is the open's)."""
        raise NotImplementedError

    def gone(self) -> str | None:
        """Why the client has given up already ("reset", "closed"), or None."""
        raise NotImplementedError

    def open(self, on_done: Any) -> Opening:
        """Start its channel's open; ``on_done`` must get the answer."""
        raise NotImplementedError

    def opened(self, chan: Any) -> None:
        """Hand the client and its channel to a relay."""
        raise NotImplementedError

    def refused(self, error: BaseException) -> None:
        """Its open failed: tell the client if it can be told, then fail()."""
        self.fail(describe(error))

    def expired(self, stage: Stage) -> None:
        """Its deadline passed while in ``stage``."""
        raise NotImplementedError

    def fail(self, why: str) -> None:
        """Close it, counted as failed because of ``why``."""
        raise NotImplementedError

    def end(self, why: str | None = None) -> None:
        """Close it, not as a failure: it went away, was dropped (``why``),
        or the forward stops."""
        raise NotImplementedError
