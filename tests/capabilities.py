"""What this machine can do, probed, for tests that need a POSIX ability.

The unit tests run on macOS and Windows too (.github/workflows/ci.yml).  A
test that needs something one of them lacks skips by asking here, never by
the system's name, so that it runs wherever the ability exists.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import tempfile

UNIX_SOCKETS = hasattr(socket, "AF_UNIX")
IS_ROOT = getattr(os, "geteuid", lambda: -1)() == 0


def _posix_modes() -> bool:
    # Windows keeps only a read-only bit: chmod 0o600 reads back as 0o666.
    fd, path = tempfile.mkstemp()
    try:
        os.close(fd)
        os.chmod(path, 0o600)
        return os.stat(path).st_mode & 0o777 == 0o600
    finally:
        os.unlink(path)


POSIX_MODES = _posix_modes()


def low_ports_need_privilege() -> bool:
    """Whether binding a port below 1024 is refused to this process.

    Linux refuses it to non-root users; macOS (since 10.14) and Windows
    allow it to everyone on loopback.
    """
    for port in range(1000, 1024):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except PermissionError:
                return True
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    continue
                return True
            return False
    return True


def short_temp_dir() -> str:
    """A new directory whose paths fit in a unix socket's address.

    ``sun_path`` holds 104 bytes on macOS and 108 on Linux; macOS's per-user
    temporary directory (``/var/folders/...``) plus pytest's ``tmp_path``
    leaves too little of that.
    """
    for base in ("/tmp", None):
        with contextlib.suppress(OSError):
            return tempfile.mkdtemp(prefix="nbt", dir=base)
    raise OSError("no temporary directory")
