"""``ProxyCommand``: a program whose stdin and stdout carry the SSH connection.

As ssh(1), the command runs as ``$SHELL -c "exec <command>"``; where there
is no POSIX shell (Windows) it is refused, ProxyJump recommended.  It talks to
us over a socket pair rather than two pipes, so the transport reads it like
any socket.  Its lifetime is the connection's: :meth:`ProxyCommand.close`
ends it (by PID) and reaps it; its last words on stderr explain a failure.
"""

from __future__ import annotations

import collections
import contextlib
import socket
import subprocess
import threading

from ..errors import ConnectError
from ..platform import processes
from .printable import escaped

# How long a proxy gets to leave after its socket is closed, before SIGTERM
# and then SIGKILL: most (ssh -W, nc) leave on EOF at once.
GRACE = 1.0
STDERR_LINES = 5


class ProxyCommand:
    """One running ProxyCommand; :meth:`start` gives the socket to speak SSH on."""

    def __init__(self, command: str) -> None:
        self.command = command
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._reader: threading.Thread | None = None

    def start(self) -> socket.socket:
        argv = processes.shell_command(self.command)
        if argv is None:
            raise ConnectError(
                "ProxyCommand is not supported on Windows (it needs a POSIX "
                "shell); use ProxyJump (-J) instead"
            )
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                argv,
                stdin=theirs.fileno(),
                stdout=theirs.fileno(),
                stderr=subprocess.PIPE,
                close_fds=True,
            )
        except OSError as exc:
            ours.close()
            raise ConnectError(
                f"cannot run ProxyCommand {self.command!r} with {argv[0]}: "
                f"{exc.strerror or exc}"
            ) from None
        finally:
            theirs.close()
        self._reader = threading.Thread(
            target=self._read_stderr, name="nbtunnel-proxy-stderr", daemon=True
        )
        self._reader.start()
        return ours

    def _read_stderr(self) -> None:
        process = self._process
        assert process is not None and process.stderr is not None
        with process.stderr:
            for line in process.stderr:
                # What it relays may be a server's words: escaped.
                text = escaped(line.strip())
                if text:
                    self._stderr.append(text)

    def failure(self) -> str | None:
        """Why the proxy failed, if it has exited: its status and last stderr."""
        process = self._process
        if process is None:
            return None
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(GRACE)
        if process.returncode is None:
            return None
        if self._reader is not None:
            self._reader.join(GRACE)
        said = "; ".join(self._stderr)
        return (
            f"ProxyCommand {self.command!r} exited with status {process.returncode}"
            + (f": {said}" if said else "")
        )

    def close(self) -> None:
        """End the command (it started with us, so we stop it by its PID)."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            process.wait(GRACE)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None:
            # Bounded: a child the proxy left behind may hold stderr open,
            # and stopping a tunnel must not wait for it.
            self._reader.join(GRACE)
