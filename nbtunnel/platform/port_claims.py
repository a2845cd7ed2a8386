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
import hashlib
import os
import re
import stat
import tempfile
from types import ModuleType

from . import place


class PortTaken(Exception):
    """The port is claimed for another owner, named in ``owner``."""

    def __init__(self, address: str, port: int, owner: str) -> None:
        super().__init__(f"{address} port {port} is claimed by {owner}")
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
    """This user's claims directory (made 0700, refused if anyone else's)."""
    uid = getattr(os, "getuid", None)
    if uid is None:
        return None
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    path = os.path.join(base, f"nbtunnel-{uid()}-ports")
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    # In a shared /tmp another user could have made it first, or a link.
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid() or info.st_mode & 0o077:
        return None
    return path


def claim(address: str, port: int, owner: str) -> Claim | None:
    """Claim ``address:port`` for ``owner``, with any process that claims it
    for the same owner.  Raises PortTaken if it is held for another; None
    where nothing can be claimed (then the port must not be shared)."""
    fcntl = _fcntl()
    where = directory()
    if fcntl is None or where is None:
        return None
    # Per loopback: machines that share a /tmp (network namespaces, a
    # container's mount) have ports of their own.
    loopback = hashlib.sha256(place.here().encode()).hexdigest()[:12]
    name = f"{loopback}-{re.sub(r'[^0-9A-Za-z.]', '-', address)}-{port}"
    fd = os.open(os.path.join(where, name), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            # Alone: nobody holds it, so the owner written is ours.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, 0)
            os.pwrite(fd, owner.encode(), 0)
        except BlockingIOError:
            pass  # held: by whom is read under a shared lock below
        # Under an exclusive lock a moment ago, or others' shared ones: the
        # owner in the file is final while any of us holds it.
        fcntl.flock(fd, fcntl.LOCK_SH)
        holder = os.pread(fd, 4096, 0).decode(errors="replace")
        if holder != owner:
            raise PortTaken(address, port, holder or "another process")
    except BaseException:
        os.close(fd)
        raise
    return Claim(fd)
