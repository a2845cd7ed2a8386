"""The embedded SSH server: a demo and test peer on loopback, never a production server."""

from __future__ import annotations

import contextlib
import logging
import shlex
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import TracebackType

import paramiko

from .._paramiko.transport import ServerTransport
from ..grammar.forwards import bracketed
from ..platform import sockets
from ..status import Counters
from .keys import blob, new_key
from .session import Session, is_loopback

logger = logging.getLogger("nbtunnel.testing")

# The longest a client may take to log in; a stuck one is dropped.
LOGIN_TIMEOUT = 15.0
# How often idle threads look at whether the server is stopping.
POLL = 0.2


class EmbeddedServer:
    """An SSH server in this process for demos, Binder and tests without OpenSSH.

    It listens on loopback only, with a host key and a client key made for
    it alone, lets in one user with that key, and serves what forwarding
    needs (``-L``, ``-R`` and ``-D``, TCP and unix sockets) to loopback
    targets; no shell.  ``line()`` is the ssh command line that reaches it::

        with EmbeddedServer() as server:
            t = nbtunnel.open(server.line("-L", "0:localhost:8000"))

    It is a demo peer: anyone who can read its key file can use it, so it
    refuses to listen anywhere but loopback.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        user: str = "demo",
        directory: str | Path | None = None,
    ) -> None:
        """``directory`` receives the key and known_hosts files (default: a
        temporary directory, removed by ``stop()``)."""
        if not is_loopback(host):
            raise ValueError(
                f"the embedded server is a demo peer and listens on loopback only; "
                f"'{host}' is not a loopback address (use 127.0.0.1 or ::1)"
            )
        if host.lower().startswith("localhost"):
            host = "127.0.0.1"
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is out of range (0 to 65535; 0: any free)")
        self.host = host.strip("[]")
        self.user = user
        self._requested_port = port
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._directory = Path(directory) if directory is not None else None
        self.counters = Counters()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: set[threading.Thread] = set()
        self._sessions: set[Session] = set()
        self._transports: set[ServerTransport] = set()
        self._logins = 0
        self.port = 0

    # -- lifetime -------------------------------------------------------------

    def start(self) -> EmbeddedServer:
        """Make the keys and start listening; returns the server itself."""
        if self._listener is not None:
            raise RuntimeError("the embedded server is running already")
        if self._directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="nbtunnel-demo-")
            self._directory = Path(self._tmp.name)
        self._directory.mkdir(parents=True, exist_ok=True)
        self.key_path = self._directory / "id_ed25519"
        self.known_hosts_path = self._directory / "known_hosts"
        for stale in (self.key_path, self.key_path.with_suffix(".pub")):
            stale.unlink(missing_ok=True)
        self._client_blob = blob(new_key(self.key_path, f"{self.user}@nbtunnel-demo"))
        host_path = self._directory / "host_ed25519"
        host_path.unlink(missing_ok=True)
        host_path.with_suffix(".pub").unlink(missing_ok=True)
        host_line = new_key(host_path, "nbtunnel-demo-host")
        self._host_key = paramiko.Ed25519Key(filename=str(host_path))

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            sockets.exclusive_address(listener)
            listener.bind((self.host, self._requested_port))
            listener.listen(128)
        except OSError:
            listener.close()
            self._cleanup_files()
            raise
        self.port = int(listener.getsockname()[1])
        name = f"[{self.host}]:{self.port}"
        self.known_hosts_path.write_text(f"{name} {' '.join(host_line.split()[:2])}\n")
        self._listener = listener
        self._stopping.clear()
        self._spawn(self._accept, "nbtunnel-testing-accept")
        logger.info("embedded SSH server on %s", name)
        return self

    def stop(self) -> None:
        """Close every connection, listener and relay, wait for their threads,
        and remove the temporary files.  Safe to call more than once."""
        self._stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            sessions = list(self._sessions)
            transports = list(self._transports)
        for session in sessions:
            session.close()
        for transport in transports:
            transport.close()
        current = threading.current_thread()
        while True:
            with self._lock:
                waiting = [t for t in self._threads if t is not current]
            if not waiting:
                break
            for thread in waiting:
                thread.join(5.0)
                if thread.is_alive():
                    logger.warning("%s did not end", thread.name)
                    with self._lock:
                        self._threads.discard(thread)
        self._cleanup_files()

    def _cleanup_files(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp, self._directory = None, None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def logins(self) -> int:
        """How many clients have logged in since start()."""
        return self._logins

    # -- what a client types ------------------------------------------------

    @property
    def destination(self) -> str:
        return f"{self.user}@{bracketed(self.host)}"

    def options(self) -> list[str]:
        """The ssh options that reach this server: its port, key and known_hosts,
        and no config file (so the user's own settings do not interfere)."""
        if self._listener is None:
            raise RuntimeError("the embedded server is not running; call start()")
        return [
            "-F",
            "none",
            "-i",
            str(self.key_path),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts_path}",
            "-p",
            str(self.port),
        ]

    def line(self, *forwards: str) -> str:
        """The ssh command line (without ``ssh``) for ``forwards``, e.g.
        ``line("-L", "0:localhost:8000")``, as nbtunnel.open() and %tunnel take it."""
        return shlex.join([*forwards, *self.options(), self.destination])

    def ssh_command(self, *forwards: str) -> str:
        """The same as OpenSSH's ssh would run it (``-N``: no shell here)."""
        return shlex.join(["ssh", "-N", *forwards, *self.options(), self.destination])

    # -- serving ----------------------------------------------------------------

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        def run() -> None:
            try:
                target()
            finally:
                with self._lock:
                    self._threads.discard(thread)

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            self._spawn(partial(self._serve, sock), "nbtunnel-testing-conn")

    def _serve(self, sock: socket.socket) -> None:
        transport = ServerTransport(sock)
        transport.add_server_key(self._host_key)
        # A client stuck before login holds a thread: give it as long as a
        # login may take, not paramiko's defaults.
        transport.banner_timeout = transport.handshake_timeout = LOGIN_TIMEOUT
        session = Session(
            transport, self.user, self._client_blob, self.counters, self._spawn
        )
        with self._lock:
            if self._stopping.is_set():
                transport.close()
                return
            self._transports.add(transport)
            self._sessions.add(session)
        try:
            try:
                transport.start_server(server=session)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                logger.info("a client's handshake failed: %s", exc)
                return
            deadline = time.monotonic() + LOGIN_TIMEOUT
            counted = False
            while transport.is_active() and not self._stopping.is_set():
                chan = transport.accept(POLL)
                if chan is not None:
                    session.serve_channel(chan)
                if not counted and transport.is_authenticated():
                    # Counted here, not in the key check: paramiko asks that
                    # twice per login (the offer, then the signature).
                    counted = True
                    with self._lock:
                        self._logins += 1
                elif not counted and time.monotonic() > deadline:
                    logger.info("a client did not log in within %s s", LOGIN_TIMEOUT)
                    break
        finally:
            session.close()
            transport.close()
            with self._lock:
                self._transports.discard(transport)
                self._sessions.discard(session)
