"""Claims on shared ports: several processes of one user may listen on one
port (ReusePort), and must then all serve the same thing.

The system spreads a shared port's connections among its listeners without
asking what each serves: two unrelated tunnels on one port would split a
database's connections between two databases.  So whoever shares a port
first claims it for an owner (a name for what it serves); others join only
under the same owner.  A claim is a file per port in a directory of this
user's alone, locked shared (``flock``) while held: the system lets go of
a dead process's lock, so a stale claim is never in the way.

Where there is no ``fcntl`` (Windows) nothing can be claimed, and nothing
is shared either: the system has no ``SO_REUSEPORT`` there.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import time
from types import ModuleType

from . import place

# Where the claims directory goes: the first of these that is the user's
# own, else the last.
BASES = ("/run/user/{uid}", "/tmp")


class PortTaken(Exception):
    """The port is claimed for another owner, named in ``owner``."""

    def __init__(self, port: int, owner: str) -> None:
        super().__init__(f"port {port} is claimed by {owner}")
        self.owner = owner


class Claim:
    """A held claim; :meth:`release` (or the process ending) lets go."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # the lock goes with the descriptor


def _fcntl() -> ModuleType | None:
    try:
        import fcntl
    except ImportError:  # Windows
        return None
    return fcntl


def directory() -> str | None:
    """This user's claims directory (made 0700; None if it cannot be, or if
    it is anyone else's).  One per user and machine whatever the job: the
    session's /run/user/UID where there is one, else /tmp itself (not
    TMPDIR, which batch systems set per job)."""
    uid = getattr(os, "getuid", None)
    if uid is None:
        return None
    bases = [b.format(uid=uid()) for b in BASES]
    base = next((b for b in bases[:-1] if _mine(b)), bases[-1])
    path = os.path.join(base, f"nbtunnel-{uid()}-ports")
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
    except OSError:
        return None
    return path if _mine(path) else None


def _mine(path: str) -> bool:
    """A directory of this user's that nobody else may write into."""
    try:
        info = os.lstat(path)  # a link is not followed: refused below
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and not info.st_mode & 0o022
    )


def claim(port: int, owner: str, wait: float = 10.0) -> Claim | None:
    """Claim ``port`` (on this loopback, any address) for ``owner``, with
    any process that claims it for the same owner.  Raises PortTaken if it
    is held for another; None where nothing can be claimed (then the port
    must not be shared)."""
    fcntl = _fcntl()
    where = directory()
    if fcntl is None or where is None:
        return None
    # Per loopback: machines that share a /tmp (network namespaces, a
    # container's mount) have ports of their own.
    loopback = hashlib.sha256(place.here().encode()).hexdigest()[:12]
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(os.path.join(where, f"{loopback}-{port}"), flags, 0o600)
    except OSError:
        return None
    try:
        if _hold(fcntl, fd, owner.encode(), time.monotonic() + wait):
            return Claim(fd)
        holder = os.pread(fd, 4096, 0).decode(errors="replace")
    except OSError:  # no locks on this file system (ENOLCK): not shared
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    raise PortTaken(port, holder or "another process")


def _hold(fcntl: ModuleType, fd: int, owner: bytes, deadline: float) -> bool:
    """Hold ``fd`` shared; whether it is ``owner``'s.  The owner is written
    only under an exclusive lock (nobody else holds it) and read only under
    a shared one, so two owners never both hold it."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # held by others: whose is read under a shared lock
        else:  # alone: nobody holds it, so it becomes ours
            os.ftruncate(fd, 0)
            os.pwrite(fd, owner, 0)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # someone is in their exclusive moment
            if time.monotonic() > deadline:
                raise OSError(errno.ETIMEDOUT, "a port claim stayed locked") from None
            time.sleep(0.01)
            continue
        if os.pread(fd, len(owner) + 1, 0) == owner:
            return True
        # Another's; unless they all left meanwhile (then, alone, ours).
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
