"""Remote forwards (ssh -R): the server listens; each connection is served from this machine.

Here: asking the server to listen, and asking again after a reconnect
until it lets go of the port; ``here.py`` connects each connection to its
target.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import ConnectError, ForwardError
from ..grammar.forwards import ForwardSpec, bracketed
from ..platform import sockets
from . import here
from .base import EventSink, RunningForward
from .relay import Channel, Relay

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}

# Given how many times in a row the server refused a -R after a reconnect,
# the seconds to wait before asking again, or None to give up (the tunnel's
# reconnect back-off and ReconnectAttempts).
RetryWait = Callable[[int], float | None]


class RemoteChannel(Channel, Protocol):
    """An incoming forwarded channel: a Channel the SOCKS handshake can also time."""

    def settimeout(self, timeout: float | None) -> None: ...


class Listening(Protocol):
    """The server-side listener the connection set up (connection.RemoteListener)."""

    @property
    def address(self) -> str: ...
    @property
    def port(self) -> int | None: ...


class RemoteListenerHost(Protocol):
    """What a remote forward needs of the SSH connection."""

    def listen_remote(
        self,
        address: str,
        port: int | None,
        handler: Callable[[Any, tuple[str, int]], None],
        refused: Callable[[str], None] | None = None,
    ) -> Listening: ...

    def cancel_remote(self, address: str, port: int | None) -> None: ...


def bind_address(spec: ForwardSpec) -> str:
    """The address a -R forward asks the server to bind, as OpenSSH's ssh sends it.

    RFC 4254 7.1: "localhost" is loopback only, "" every address; the
    server's GatewayPorts decides whether anything wider than loopback is
    honoured.
    """
    host = spec.listen_host
    if host is None:
        return "localhost"
    return "" if host in ("*", "") else host


class RemoteForward(RunningForward):
    """Same as ``ssh -R``: the server listens, and this machine connects to the target.

    Without a target (``-R [bind:]port``) it is OpenSSH 7.6's remote dynamic
    forward: each connection speaks SOCKS, and this machine connects where
    the server's client asks.

    After a reconnect the server may refuse the port it gave before: the old
    session still holds it until the server notices that one is gone (a
    frozen session, a link that went dark).  With ``retry`` the forward then
    stays ``reconnecting`` and asks again, in a thread of its own, until the
    server lets go, as ssh under autossh would (see :meth:`restore`).
    """

    def __init__(
        self,
        index: int,
        spec: ForwardSpec,
        connection: RemoteListenerHost,
        *,
        emit: EventSink | None = None,
        retry: RetryWait | None = None,
    ) -> None:
        if spec.kind != "remote":
            raise ValueError(f"not a remote forward: {spec}")
        super().__init__(index, spec, emit)
        self._connection = connection
        self._listening: Listening | None = None
        self._cancelled = False
        # Guards _listening against stop: a grant that arrives while the
        # forward stops is cancelled by whichever of the two comes second.
        self._listen_lock = threading.Lock()
        # Counts lost connections (under _listen_lock): a grant that comes
        # back from a connection lost meanwhile listens nowhere now.
        self._losses = 0
        self._retry = retry
        # One request to the server at a time (the reconnect thread's and
        # the retry thread's), and the retry's bookkeeping.
        self._asking = threading.Lock()
        self._retrier: threading.Thread | None = None
        self._refusals = 0
        self._refused_since = 0.0
        self._halt = threading.Event()  # wakes the retry thread to stop
        if spec.listen_path is None and bind_address(spec) not in _LOOPBACK:
            self.note = (
                "asked to listen beyond loopback; the server's sshd_config "
                "GatewayPorts decides (set it to clientspecified or yes to allow it)"
            )

    @property
    def listen_host(self) -> str | None:
        return None if self.spec.listen_path is not None else bind_address(self.spec)

    @property
    def listen_port(self) -> int | None:
        if self._listening is not None:
            return self._listening.port
        return self.spec.listen_port

    def start(self) -> None:
        """Ask the server to listen; raises ForwardError if it refuses.

        At the first start a refusal is final (ExitOnForwardFailure): the
        port is taken there, or the server forbids it.
        """
        if self.spec.target_path is not None and sockets.unix_family() is None:
            # Refused before the server listens, not per connection later.
            raise here.no_unix_sockets(self.spec.target_path)
        self._listening = self._request()
        self._announce()
        self.state = "up"

    def restore(self) -> None:
        """Ask the new connection's server to listen again.

        The same port where one was given; for port 0 whatever the server
        allocates now (the old one may still be held by the old session).
        A refusal keeps the forward ``reconnecting`` and asks again with
        ``retry``'s back-off until the server grants it, the forward stops
        or the tries run out; without ``retry`` it fails (ForwardError).
        """
        with self._asking:
            refused = self._ask()
            if not isinstance(refused, ForwardError) or self._retrier is not None:
                return  # granted, not wanted now, or the retry thread asks
            if self._retry is None:
                self.state, self.error = "failed", str(refused)
                raise refused
            self._refusals, self._refused_since = 1, time.monotonic()
            wait = self._retry(1)
            if wait is None:
                raise ForwardError(self._give_up(refused))
            self.error = _waiting(self.spec, self._refusals, wait)
            self.emit("forward_waiting", error=self.error)
            thread = threading.Thread(
                target=self._keep_asking,
                args=(wait,),
                name=f"nbtunnel-reask-R{self.index}",
                daemon=True,
            )
            try:
                thread.start()
            except RuntimeError as exc:
                self.state = "failed"
                self.error = f"{refused}; could not start a thread to ask again: {exc}"
                raise ForwardError(self.error) from None
            self._retrier = thread

    def _keep_asking(self, wait: float) -> None:
        """The retry thread: ask after each wait until granted, stopped or given up."""
        assert self._retry is not None
        while not self._halt.wait(wait):
            with self._asking:
                refused = self._ask()
                if isinstance(refused, ForwardError):
                    self._refusals += 1
                next_wait = None if refused is None else self._retry(self._refusals)
                if next_wait is None:
                    if refused is not None:
                        error = self._give_up(refused)
                        self.emit("forward_failed", error=error)
                    self._retrier = None  # under the lock: restore() sees it
                    return
                if isinstance(refused, ForwardError):
                    self.error = _waiting(self.spec, self._refusals, next_wait)
            wait = next_wait

    def _ask(self) -> ForwardError | ConnectError | None:
        """One request to listen again, if still wanted (under ``_asking``):
        the server's refusal, the lost connection's error, or None (granted,
        or no longer wanted)."""
        if not self._wanted():
            return None
        with self._listen_lock:
            losses = self._losses
        try:
            listening = self._request()
        except (ForwardError, ConnectError) as exc:
            # ConnectError: the connection is gone again; its reconnect asks
            # too, whichever of the two comes first.
            return exc
        with self._listen_lock:
            if self._losses != losses:
                # Granted by a connection that died meanwhile: the next
                # one's restore() asks again (the forward is still wanted).
                return ConnectError("the SSH connection was lost while asking")
            if not self._wanted():
                # Stopped (or failed) while asking: let go of the grant.
                self._connection.cancel_remote(listening.address, listening.port)
                return None
            self._listening = listening
            self.state, self.error = "up", None
        self._announce()
        if self._refusals:
            seconds = round(time.monotonic() - self._refused_since, 3)
            self.emit(
                "forward_restored",
                port=listening.port,
                tries=self._refusals + 1,
                seconds=seconds,
            )
            self._refusals = 0
        return None

    def _wanted(self) -> bool:
        return self.state == "reconnecting" and not self._stopping

    def _give_up(self, refused: BaseException) -> str:
        self.state = "failed"
        self.error = (
            f"{refused}; asked {self._refusals} times after the reconnect, "
            "ReconnectAttempts allows no more"
        )
        return self.error

    def _request(self) -> Listening:
        """Ask the server to listen; raises ForwardError if it refuses."""
        spec = self.spec
        path = spec.listen_path  # a unix socket: no port
        address = bind_address(spec) if path is None else path
        port = int(spec.listen_port or 0) if path is None else None
        return self._connection.listen_remote(
            address, port, self._incoming, self._connection_failed
        )

    def _announce(self) -> None:
        spec = self.spec
        if spec.listen_port == 0:
            # ssh prints this too: the only way a user learns the port.
            target = None if spec.is_dynamic else here.target_text(spec)
            self.emit("allocated", port=self.listen_port, target=target)

    def connection_lost(self, why: str) -> None:
        with self._listen_lock:
            # The server closed it with the old connection: nothing to
            # cancel, and a port 0 is the server's to choose again.
            self._listening = None
            self._losses += 1
        super().connection_lost(why)

    def _close_listening(self) -> None:
        self._halt.set()  # a retry waiting for its next try ends now
        with self._listen_lock:
            listening = None if self._cancelled else self._listening
            self._cancelled = True
        if listening is not None:
            self._connection.cancel_remote(listening.address, listening.port)

    def stop(self) -> None:
        super().stop()
        retrier = self._retrier
        if retrier is not None and retrier is not threading.current_thread():
            retrier.join()

    def _incoming(self, chan: RemoteChannel, origin: tuple[str, int]) -> None:
        # Already in a thread of its own (the connection's router).
        self._adopt(self._handle, chan, origin, refuse=chan.close)

    def _handle(self, chan: RemoteChannel, origin: tuple[str, int]) -> None:
        where = f"{origin[0]}:{origin[1]}" if origin[0] else "a unix-socket client"
        try:
            sock, target, rest = here.reach(self.spec, chan, where)
        except here.Unreached as exc:
            self._connection_failed(str(exc))
            with contextlib.suppress(OSError, EOFError):
                chan.close()
            return
        relay = Relay(sock, chan, self.counters, target_is_sock=True, to_sock=rest)
        self._relay(relay, where, target)


def _waiting(spec: ForwardSpec, refusals: int, wait: float) -> str:
    """A -R's error while it asks again for what the server refused."""
    host = bracketed(bind_address(spec) or "*")
    where = spec.listen_path or f"{host}:{spec.listen_port}"
    return (
        f"the server still holds {where} after the reconnect (likely for the "
        "old session, until it notices that one is gone), or refuses it now; "
        f"asking again until it lets go (refused {refusals} "
        f"{'time' if refusals == 1 else 'times'}, next try in {wait:.1f} s)"
    )
