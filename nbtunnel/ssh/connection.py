"""One SSH connection: what the engine holds, from logging in to its channels.

:class:`Connection` dials (``dial``), checks the host key (``host_keys``),
logs in (``auth``), opens channels (``opens``), routes the server's ``-R``
connections to their forwards (``remote``) and is watched for a dead server
(``keepalive``).
paramiko's exceptions are turned into nbtunnel's here, each with a sentence
a person can act on.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

import paramiko

from .._paramiko.transport import Transport
from ..errors import ConnectError, TunnelError
from ..settings.resolve import ConnectSettings, Prompt
from . import opens
from .auth import Login
from .dial import Dialer, connect_timeout, negotiate
from .host_keys import HostKeyCheck
from .keepalive import Watchdog
from .paramiko_log import Route
from .printable import escaped
from .remote import Remotes
from .trace import QUIET, Trace


class Connection(Remotes, opens.Opener):
    """One SSH connection (one paramiko Transport), the channels it opens
    (``opens.Opener``) and its remote forwards (``remote.Remotes``)."""

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
        # The steps, for the -v of the tunnel that made this connection
        # (paramiko's log, for -vvv, goes to each tunnel that hears it).
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
        self._watchdog = Watchdog(
            settings.host,
            settings.server_alive_interval,
            settings.server_alive_count_max,
        )
        # The transport and where its log goes are set, and taken by
        # close(), together under this lock: an abandon() from another
        # thread finds both or neither, and never strands a lent channel.
        self._lock = threading.Lock()
        self._transport: Transport | None = None
        self._log: Route | None = None
        self._login: Login | None = None
        super().__init__()  # the remote forwards' routes

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
            with self._lock:
                self._transport = transport
                if self._dial.abandoned:
                    raise ConnectError("the connect was abandoned")
                # Before its thread starts: it logs nowhere else.
                self._log = Route(transport, trace)
            negotiate(
                transport, self.settings, self._host_keys.key_types, trace, self._start
            )
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
                f"{escaped(str(exc) or type(exc).__name__)}"
            ) from None
        except BaseException:
            self.close()
            raise

    def _start(self, done: threading.Event) -> None:
        # Not once close() took the transport (an abandon): its thread would
        # log into a channel given back, maybe lent to another connection.
        with self._lock:
            if self._transport is None:
                raise ConnectError("the connect was abandoned")
            self._transport.start_client(event=done)

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

    def hear(self, trace: Trace) -> None:
        """paramiko's log of this connection to ``trace`` too, if it is a -vvv
        one (a tunnel that shares the connection), until :meth:`unhear`."""
        with self._lock:
            log = self._log
        if log is not None:
            log.hear(trace)

    def unhear(self, trace: Trace) -> None:
        """``trace`` lets go of the connection: no more of its log there."""
        with self._lock:
            log = self._log
        if log is not None:
            log.unhear(trace)

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
        with self._lock:
            t, self._transport = self._transport, None
            log, self._log = self._log, None
        ended = True
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
            ended = not t.is_alive()
        if log is not None:
            # Its channel is lent again only if its thread logs no more.
            log.end(thread_ended=ended)
        if self._login is not None:
            self._login.close()
            self._login = None
        self._dial.close()
        self._watchdog.join()
        self._dial.close_hops()
