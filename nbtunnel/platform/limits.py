"""What the system lets one process hold (file descriptors, threads), and
what to say and do when a forward runs into it.

Every socket a forward listens on or serves is a file descriptor, and the
soft ``RLIMIT_NOFILE`` a notebook inherits is often 1024 or even 256 (a
container, a launchd session), while its hard limit allows far more.  The
engine raises the soft limit to the hard one at start, as Go's runtime and
most servers do: only a process's own soft limit is touched, never above
what the administrator allowed.  Where there is no such limit (Windows has
no ``resource``), nothing is done.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import importlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any


def _probe_resource() -> Any:
    try:
        return importlib.import_module("resource")
    except ImportError:  # Windows: its sockets have no per-process descriptor limit
        return None


resource = _probe_resource()

# macOS's OPEN_MAX (<sys/syslimits.h>): with an unlimited hard limit its
# setrlimit refuses a soft limit above kern.maxfilesperproc, and where that
# cannot be read, above this.
OPEN_MAX = 10240

# Out of descriptors: this process's limit, the system's, and Windows' word
# for the first (socket errors carry WSA codes there).
_FD_ERRNOS = {errno.EMFILE, errno.ENFILE, getattr(errno, "WSAEMFILE", errno.EMFILE)}
# Out of kernel memory for sockets.
_MEMORY_ERRNOS = {errno.ENOBUFS, errno.ENOMEM}


def fd_limits() -> tuple[int | None, int | None] | None:
    """(soft, hard) descriptor limits of this process, None meaning unlimited;
    None where the system has no such limit."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinity = resource.RLIM_INFINITY
    return (None if soft == infinity else soft, None if hard == infinity else hard)


def _max_files_per_proc() -> int | None:
    """macOS's kern.maxfilesperproc, where libc has sysctlbyname."""
    with contextlib.suppress(OSError, TypeError, AttributeError):
        libc: Any = ctypes.CDLL(None, use_errno=True)
        value = ctypes.c_int(0)
        size = ctypes.c_size_t(ctypes.sizeof(value))
        if (
            libc.sysctlbyname(
                b"kern.maxfilesperproc",
                ctypes.byref(value),
                ctypes.byref(size),
                None,
                0,
            )
            == 0
            and value.value > 0
        ):
            return int(value.value)
    return None  # Linux's glibc has no sysctlbyname


def raise_fd_limit() -> tuple[int, int] | None:
    """Raise this process's soft descriptor limit as far as its hard limit
    lets it; returns (before, after), or None where there is no limit or it
    is unlimited already.  Never lowers it; never raises.

    An unlimited hard limit (macOS) cannot be the soft one there: the
    system's per-process maximum is tried instead, then OPEN_MAX.
    """
    limits = fd_limits()
    if limits is None:
        return None
    soft, hard = limits
    if soft is None:
        return None
    if hard is not None:
        candidates = [hard]
    else:
        candidates = [n for n in (_max_files_per_proc(), OPEN_MAX) if n is not None]
    for target in candidates:
        if target <= soft:
            continue
        try:
            resource.setrlimit(
                resource.RLIMIT_NOFILE,
                (target, resource.RLIM_INFINITY if hard is None else hard),
            )
        except (ValueError, OSError):
            continue  # above what the kernel allows (nr_open, maxfilesperproc)
        return soft, target
    return soft, soft


def _limit_words() -> str:
    limits = fd_limits()
    if limits is None:
        return "close some connections or run fewer forwards"
    soft, hard = limits
    return (
        f"this process may have {soft or 'unlimited'} open (ulimit -n; hard limit "
        f"{hard or 'unlimited'}): raise the hard limit where the engine starts "
        "(ulimit -Hn before starting Jupyter, LimitNOFILE= for a systemd "
        "service) or run fewer forwards"
    )


def shortage(exc: BaseException) -> str | None:
    """One line naming the limit ``exc`` ran into and what to do about it;
    None when ``exc`` is no shortage of descriptors, memory or threads."""
    if isinstance(exc, OSError):
        if exc.errno == errno.ENFILE:
            return (
                "the system is out of file descriptors (all processes together, "
                "fs.file-max): close programs or raise that limit"
            )
        if exc.errno in _FD_ERRNOS:
            return f"out of file descriptors: {_limit_words()}"
        if exc.errno in _MEMORY_ERRNOS:
            return (
                f"the system is short of memory for sockets ({exc.strerror}): "
                "close connections or programs"
            )
        return None
    if isinstance(exc, RuntimeError) and "can't start new thread" in str(exc):
        return (
            "could not start a thread: can't start new thread (a limit on "
            "processes or threads: a container's pids limit, systemd's TasksMax, "
            "ulimit -u); raise it or run fewer connections"
        )
    return None


class Reserve:
    """One descriptor held back, given up for a moment when the process has
    none left: enough to accept a queued client only to refuse it, rather
    than leave it waiting for ever (libev's documented trick for EMFILE).

    One per process is enough: listeners take turns under its lock.  The
    descriptor freed for a moment can go to another thread (another
    listener's accept, say): the spare is then taken again first thing
    once a descriptor frees, under the same lock as every accept retried
    in a shortage (:meth:`kept`), before any client gets it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None

    def _take(self) -> None:
        if self._fd is None:
            with contextlib.suppress(OSError):
                self._fd = os.open(os.devnull, os.O_RDONLY)

    def hold(self) -> None:
        """Take the spare descriptor now (while there is one to take)."""
        with self._lock:
            self._take()

    @contextlib.contextmanager
    def kept(self) -> Iterator[None]:
        """Hold the lock, the spare taken again if it was lost and one is free."""
        with self._lock:
            self._take()
            yield

    def spend(self, use: Callable[[], bool]) -> bool:
        """Free the spare, run ``use()`` (which must close what it opens),
        take the spare again; False when there was no spare to free."""
        with self._lock:
            self._take()
            if self._fd is None:
                return False
            os.close(self._fd)
            self._fd = None
            try:
                return use()
            finally:
                self._take()


RESERVE = Reserve()
