"""Socket options and wake-ups that differ between systems, probed on ``socket``."""

from __future__ import annotations

import contextlib
import errno
import socket

# Where it exists (Linux, macOS): a send that never blocks, whatever the
# socket's mode.  Windows has none, and the fast path's splice is then off.
DONTWAIT: int | None = getattr(socket, "MSG_DONTWAIT", None)
HAS_UNIX_SOCKETS: bool = hasattr(socket, "AF_UNIX")

# What setsockopt answers for an option the system does not have: macOS
# says ENOPROTOOPT for Linux's TCP_QUICKACK (12), Windows WSAENOPROTOOPT.
_NO_SUCH_OPTION = frozenset(
    getattr(errno, name)
    for name in ("ENOPROTOOPT", "EOPNOTSUPP", "WSAENOPROTOOPT")
    if hasattr(errno, name)
)
# Options the system refused once: not asked again (quickack() runs before
# every read of the SSH socket, an exception each time would cost).
_refused: set[int] = set()


def unix_family() -> int | None:
    """``socket.AF_UNIX`` where this system has unix sockets (not Windows' Python)."""
    family: int | None = getattr(socket, "AF_UNIX", None)
    return family


def is_unix(sock: socket.socket) -> bool:
    """Whether ``sock`` is a unix socket (False where there are none)."""
    family = unix_family()
    return family is not None and sock.family == family


def quickack(sock: socket.socket) -> None:
    """Ask for quick ACKs on ``sock`` where the system has them; never raises.

    Linux's TCP_QUICKACK lasts until the kernel drops it on its own, so it
    is asked for again before every read.  macOS and Windows have no such
    option (and no delayed-ACK stall to speak of): nothing to do there.
    """
    option = getattr(socket, "TCP_QUICKACK", None)
    if option is None or option in _refused:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, 1)
    except OSError as exc:
        # Any other error (a closed socket) is the next read's to report.
        if exc.errno in _NO_SUCH_OPTION:
            _refused.add(option)


def exclusive_address(sock: socket.socket) -> None:
    """Before ``bind()`` of a listening socket: no other socket may take the port.

    On Windows ``SO_REUSEADDR`` would let a second socket steal a port that
    is listening: there ``SO_EXCLUSIVEADDRUSE`` (a port whose connections
    are in TIME_WAIT can be bound again there without any option).
    Elsewhere ``SO_REUSEADDR`` only lets a port whose last connection sits
    in TIME_WAIT be bound again, which re-running the same cell after a
    restart needs.
    """
    exclusive = getattr(socket, "SO_EXCLUSIVEADDRUSE", None)
    if exclusive is not None:
        sock.setsockopt(socket.SOL_SOCKET, exclusive, 1)
    else:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)


def shared_port(sock: socket.socket) -> bool:
    """Before ``bind()``: other sockets of this user that ask the same may
    listen on the port too, the system spreading connections among them
    (several Dask workers on one machine serve one port).  Only on
    loopback: there Linux, macOS and the BSDs admit only the same user's
    sockets to such a group (the BSDs do not for a wildcard address).
    Without ``SO_REUSEPORT`` (Windows), or where setting it fails, the port
    stays this socket's alone: returns whether it is shared."""
    exclusive_address(sock)
    option = getattr(socket, "SO_REUSEPORT", None)
    if option is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, 1)
    except OSError:  # named but refused (gVisor, old kernels): not shared
        return False
    return True


def keepalive(sock: socket.socket, *, idle: int, interval: int, count: int) -> None:
    """TCP keepalive probes after ``idle`` s of silence, every ``interval`` s,
    ``count`` of them, as far as the system lets a program set them.

    The idle time is TCP_KEEPIDLE on Linux and Windows, TCP_KEEPALIVE on
    macOS; an option the system lacks or refuses keeps its default.
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    idle_option = getattr(socket, "TCP_KEEPIDLE", None)
    if idle_option is None:
        idle_option = getattr(socket, "TCP_KEEPALIVE", None)  # macOS: 0x10
    for option, value in (
        (idle_option, idle),
        (getattr(socket, "TCP_KEEPINTVL", None), interval),
        (getattr(socket, "TCP_KEEPCNT", None), count),
    ):
        if option is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, option, value)


def client_gone(sock: socket.socket, *, spoke: bool = False) -> str | None:
    """Whether the client of an accepted ``sock`` has already given up:
    "reset" (it sent a RST), "closed" (it closed without sending a byte),
    or None: still there, or it sent data and half-closed (which is to be
    carried).  ``spoke``: it sent bytes already read (a SOCKS request), so
    an end of file now is a half-close too.  Never blocks, never consumes.

    A RST that follows data leaves the data readable on Linux, with the
    reset pending in SO_ERROR; reading that clears it, but such a client is
    dropped anyway.
    """
    flags = socket.MSG_PEEK | (DONTWAIT or 0)
    # No DONTWAIT (Windows): the socket's mode keeps the peek from waiting.
    timeout = sock.gettimeout() if DONTWAIT is None else 0.0
    try:
        if timeout != 0.0:
            sock.setblocking(False)
        try:
            data: bytes | None = sock.recv(1, flags)
        except (BlockingIOError, InterruptedError):
            data = None  # nothing sent yet, nothing ended
        finally:
            if timeout != 0.0:
                sock.settimeout(timeout)
    except OSError:
        return "reset"  # ECONNRESET, or ENOTCONN and the like: gone all the same
    if data == b"":
        return None if spoke else "closed"
    with contextlib.suppress(OSError):
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            return "reset"
    return None


class Waker:
    """Wakes a thread waiting in a selector, on every system.

    A connected socket pair rather than ``os.pipe()``: Windows' ``select``
    takes sockets only.  Register :meth:`fileno`; :meth:`wake` makes it
    readable.
    """

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    def fileno(self) -> int:
        return self._reader.fileno()

    def wake(self) -> None:
        # Full means a wake-up is already pending; closed means nobody waits.
        with contextlib.suppress(OSError):
            self._writer.send(b"x")

    def drain(self) -> None:
        """Take the pending wake-ups, to wait again."""
        with contextlib.suppress(OSError):
            while self._reader.recv(4096):
                pass

    def close(self) -> None:
        self._reader.close()
        self._writer.close()
