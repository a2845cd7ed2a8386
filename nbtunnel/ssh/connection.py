"""One SSH connection: what the engine holds, from logging in to its channels.

:class:`Connection` dials (``dial``), checks the host key (``host_keys``),
logs in (``auth``), opens channels, routes the server's ``-R`` connections
to their forwards and is watched for a dead server (``keepalive``).
paramiko's exceptions are turned into nbtunnel's here, each with a sentence
a person can act on.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import paramiko

from .._paramiko.transport import (
    CANCEL_REQUEST,
    STREAMLOCAL_PORT,
    Transport,
)
from ..errors import ConnectError, ForwardError, TunnelError
from ..settings.resolve import ConnectSettings, Prompt
from . import opens
from .auth import Login
from .dial import Dialer, connect_timeout, negotiate
from .host_keys import HostKeyCheck
from .keepalive import Watchdog
from .paramiko_log import route
from .trace import QUIET, Trace

# Called with each channel the server opens for a remote forward and the
# (address, port) it came from, in a thread of its own.
IncomingHandler = Callable[[paramiko.Channel, tuple[str, int]], None]
T = TypeVar("T")


@dataclass(frozen=True)
class RemoteListener:
    """What a remote forward asked the server to listen on.

    ``port`` is None for a unix socket, whose path is then ``address``; for
    TCP it is the port the server bound (allocated by it if 0 was asked).
    """

    address: str
    port: int | None

    @property
    def text(self) -> str:
        if self.port is None:
            return self.address
        host = self.address or "*"
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @property
    def _key(self) -> tuple[str, int]:
        return (
            self.address,
            STREAMLOCAL_PORT if self.port is None else self.port,
        )


class Connection(opens.Opener):
    """One SSH connection (one paramiko Transport) and the channels it opens
    (``opens.Opener``)."""

    def __init__(
        self,
        settings: ConnectSettings,
        prompt: Prompt | None = None,
        *,
        via: paramiko.Channel | None = None,
        warn: Callable[[str], None] | None = None,
        trace: Trace = QUIET,
    ) -> None:
        self.settings = settings
        # Asks the person behind the caller (a host key, a passphrase); None
        # when nobody can answer.
        self._prompt = prompt
        # The steps, for the -v of the tunnel that made this connection.
        self.trace = trace
        # via: a channel of the jump host before this one, instead of a socket.
        self._dial = Dialer(
            settings,
            via,
            lambda hop, through, told: Connection(
                hop, prompt, via=through, warn=warn, trace=told
            ),
            trace,
        )
        # warn(text): what a person should hear of (a key not recorded).
        self._host_keys = HostKeyCheck(settings, prompt, warn, trace)
        self._unroute: Callable[[], None] = lambda: None
        self._watchdog = Watchdog(
            settings.host,
            settings.server_alive_interval,
            settings.server_alive_count_max,
        )
        self._transport: Transport | None = None
        self._login: Login | None = None
        # paramiko keeps one reply slot for global requests and one handler
        # for every incoming forwarded channel: requests are serialised, and
        # channels are routed by the address the server reports.
        self._remote_lock = threading.Lock()
        self._remote: dict[tuple[str, int], IncomingHandler] = {}
        self._refused: dict[tuple[str, int], Callable[[str], None]] = {}

    # -- connecting -------------------------------------------------------

    def connect(self) -> None:
        """Connect, check the host key and authenticate.

        Raises ConnectError, HostKeyError or AuthenticationError; on any
        failure nothing is left open.
        """
        trace = self.trace
        for note in self.settings.config_notes:
            trace(2, "%s", note)
        try:
            transport = Transport(self._dial.open(), speedups=self.settings.fast_path)
            self._transport = transport
            if self._dial.abandoned:
                raise ConnectError("the connect was abandoned")
            self._unroute = route(transport, trace)
            negotiate(transport, self.settings, self._host_keys.key_types, trace)
            self._host_keys.check(transport.get_remote_server_key())
            self._login = Login(self.settings, self._prompt, self.timeout, trace)
            self._login.run(transport)
            self._authenticated()
            transport.route_forwarded(self._incoming)
            self._watchdog.start(transport)
        except TunnelError as exc:
            proxy = self._dial.failure() if type(exc) is ConnectError else None
            self.close()
            if proxy:
                raise ConnectError(f"{proxy} ({exc})") from None
            raise
        except (paramiko.SSHException, EOFError, OSError) as exc:
            # The steps above translate what they expect; this is the net
            # for the rest (the server hanging up mid-way, say).
            proxy = self._dial.failure()
            self.close()
            if proxy:
                raise ConnectError(proxy) from None
            raise ConnectError(
                f"the SSH connection to {self.settings.target} failed: "
                f"{str(exc) or type(exc).__name__}"
            ) from None
        except BaseException:
            self.close()
            raise

    def _authenticated(self) -> None:
        s, peer = self.settings, self._dial.peer
        where = f"{s.host} ([{peer}]:{s.port})" if peer else f"{s.host}:{s.port}"
        methods = self._login.methods if self._login is not None else []
        self.trace(
            1, 'Authenticated to %s as \'%s\' using "%s".',
            where, s.user, '" and "'.join(methods),
        )  # fmt: skip

    @property
    def timeout(self) -> float:
        return connect_timeout(self.settings)

    # -- using the connection ---------------------------------------------

    @property
    def is_active(self) -> bool:
        t = self._transport
        return t is not None and t.is_active()

    def _live(self) -> Transport:
        t = self._transport
        if t is None or not t.is_active():
            raise ConnectError(
                f"the SSH connection to {self.settings.target} is closed"
            )
        return t

    # -- remote forwards ----------------------------------------------------

    def listen_remote(
        self,
        address: str,
        port: int | None,
        handler: IncomingHandler,
        refused: Callable[[str], None] | None = None,
    ) -> RemoteListener:
        """Ask the server to listen (``tcpip-forward``, or for a unix socket
        ``streamlocal-forward``: ``port`` None and ``address`` the path).

        ``handler(channel, origin)`` then runs in a thread of its own for each
        connection made there (``refused(why)`` when none could be started).
        Raises ForwardError if the server refuses.
        """
        t = self._live()
        with self._remote_lock:
            try:
                if port is None:
                    granted = t.forward_streamlocal(address, self.timeout)
                    listener = RemoteListener(address, None)
                else:
                    bound = t.forward_tcp(address, port, self.timeout)
                    granted = bound is not None
                    listener = RemoteListener(address, bound)
            except TimeoutError:
                where = RemoteListener(address, port).text
                raise ForwardError(
                    f"the server did not answer the request to listen on {where} "
                    f"(-R) within {self.timeout:g} s"
                ) from None
            if not granted:
                self._live()  # a lost connection is said as such
                raise ForwardError(_refusal(address, port))
            # Registered before the lock is released: a connection arriving
            # right after the reply waits in _route() for it.
            self._remote[listener._key] = handler
            if refused is not None:
                self._refused[listener._key] = refused
        return listener

    def cancel_remote(self, address: str, port: int | None) -> None:
        """Stop routing what listen_remote() set up, and ask the server to close it.

        Sent without waiting for the reply: stopping must not hang on a
        server that no longer answers.
        """
        listener = RemoteListener(address, port)
        with self._remote_lock:
            self._remote.pop(listener._key, None)
            self._refused.pop(listener._key, None)
            t = self._transport
            if t is None or not t.is_active():
                return  # the server closed it with the connection
            if listener.port is None:
                t.global_request(CANCEL_REQUEST, (address,), wait=False)
            else:
                t.global_request("cancel-tcpip-forward", (address, port), wait=False)

    def _incoming(
        self,
        chan: paramiko.Channel,
        origin: tuple[str, int],
        server: tuple[str, int],
    ) -> None:
        # Runs in paramiko's transport thread, which must never wait: every
        # channel's data passes through it.
        try:
            threading.Thread(
                target=self._route,
                args=(chan, origin, server),
                name=f"nbtunnel-remote-{server[1]}",
                daemon=True,
            ).start()
        except RuntimeError as exc:
            # Raised here, it would end paramiko's thread: the SSH connection.
            # (A read without the lock, which a request to the server holds.)
            _refuse(chan, _by_port(self._refused, server), exc)

    def _route(
        self,
        chan: paramiko.Channel,
        origin: tuple[str, int],
        server: tuple[str, int],
    ) -> None:
        with self._remote_lock:
            handler = _by_port(self._remote, server)
        if handler is None:
            chan.close()
            return
        handler(chan, origin)

    def on_lost(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (once, from another thread) when the connection ends,
        for whatever reason; returns what unsubscribes it."""
        return self._watchdog.on_lost(callback)

    @property
    def lost_reason(self) -> str:
        """Why the connection ended, in words, once it has."""
        return self._watchdog.lost_reason

    def abandon(self) -> None:
        """Give up a connect() running in another thread (it raises ConnectError)."""
        self._dial.abandon()
        self.close()

    def close(self) -> None:
        """Close the connection and join its thread. Idempotent."""
        t, self._transport = self._transport, None
        if t is not None:
            t.close()
            # Its thread polls its socket every 0.1 s; a shutdown wakes it
            # at once (stopping a tunnel took 100 ms without).
            with contextlib.suppress(OSError, EOFError):
                t.sock.shutdown(socket.SHUT_RDWR)
            # Transport.close() does not always join its thread (it gives up
            # once the packetizer is closed); join so stop() leaves none.
            if t.is_alive() and t is not threading.current_thread():
                t.join(5.0)
            t.sock.close()
            self._unroute()  # its thread logs no more
        if self._login is not None:
            self._login.close()
            self._login = None
        self._dial.close()
        self._watchdog.join()
        self._dial.close_hops()


def _by_port(table: dict[tuple[str, int], T], server: tuple[str, int]) -> T | None:
    """What ``table`` holds for the listener the server reports a connection on."""
    found = table.get(server)
    if found is None:
        # The server may report the address in another spelling than was
        # asked ("" for "*", say); the port still decides.
        same_port = [v for (_, p), v in list(table.items()) if p == server[1]]
        found = same_port[0] if len(same_port) == 1 else None
    return found


def _refuse(
    chan: paramiko.Channel, refused: Callable[[str], None] | None, exc: RuntimeError
) -> None:
    """No thread for an incoming -R connection (a process limit): that one is
    closed and counted on its forward, which serves on."""
    with contextlib.suppress(OSError, EOFError):
        chan.close()
    if refused is not None:
        refused(
            f"could not start a thread for this connection: {exc} (a process limit?)"
        )


def _refusal(address: str, port: int | None) -> str:
    # SSH_MSG_REQUEST_FAILURE carries no reason, so name the usual ones.
    if port is None:
        return (
            f"the server refused to listen on the unix socket {address} (-R): "
            "the file may exist already (sshd replaces it only with "
            "StreamLocalBindUnlink yes), its directory may not be writable "
            "by the login user, or AllowStreamLocalForwarding forbids it"
        )
    where = RemoteListener(address, port).text
    low = (
        "; only root may listen on ports below 1024 on that machine, use 0 for "
        "any free port"
        if 0 < port < 1024
        else ""
    )
    return (
        f"the server refused to listen on {where} (-R): the port may be in use "
        "there, or its sshd_config forbids it (AllowTcpForwarding, PermitListen)" + low
    )
