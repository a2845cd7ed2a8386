"""Reaching the server: the byte stream an SSH connection runs over, and its handshake.

:class:`Dialer` opens that stream: a TCP socket (``ConnectTimeout``,
``AddressFamily``), a ``ProxyCommand``'s socket, or with ``-J`` a channel
through the jump hosts, each its own connection.  :func:`negotiate` then
chooses the cipher and starts SSH on it.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
import time
from collections.abc import Callable
from typing import Protocol

import paramiko

from .._paramiko.transport import Transport
from ..errors import ConnectError, ForwardError, TunnelError
from ..grammar.hostnames import host_name_problem, invalid_host
from ..settings.resolve import ConnectSettings
from . import negotiated
from .keepalive import tcp_keepalive
from .printable import escaped
from .proxy_command import ProxyCommand
from .trace import QUIET, Trace

DEFAULT_CONNECT_TIMEOUT = 30.0
# Without ConnectTimeout, how long a server that accepted the connection may
# say nothing before it is taken for no SSH server (paramiko's own default;
# sshd sends its banner at once, before reading anything).
DEFAULT_BANNER_TIMEOUT = 15.0

# paramiko ranks AES-GCM last, so by default it negotiates aes128-ctr with a
# pure-Python HMAC per packet.  GCM needs no HMAC and was the fastest cipher
# measured here for paramiko and OpenSSH alike: ``python -m benchmarks.compare``
# had ssh with aes128-gcm forward 1.4-1.7 times as fast as with its default
# cipher, for half the CPU per GiB.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def connect_timeout(settings: ConnectSettings) -> float:
    """``ConnectTimeout``: for the TCP connect, the handshake, the login, and
    the server's answers to requests."""
    return settings.connect_timeout or DEFAULT_CONNECT_TIMEOUT


class Hop(Protocol):
    """The connection to a jump host, as the dialer uses it."""

    def connect(self) -> None: ...

    def open_tcpip(
        self, host: str, port: int, origin: tuple[str, int], timeout: float
    ) -> paramiko.Channel: ...

    def close(self) -> None: ...


# Makes the (unconnected) connection to a jump host, through a channel of the
# one before it (None for the first), telling its steps to a trace.
HopFactory = Callable[[ConnectSettings, paramiko.Channel | None, Trace], Hop]


class Dialer:
    """Opens what one SSH connection runs over, and closes what that took."""

    def __init__(
        self,
        settings: ConnectSettings,
        via: paramiko.Channel | None,
        hop: HopFactory,
        trace: Trace = QUIET,
    ) -> None:
        self.settings = settings
        self._trace = trace
        # The address connected to, for messages ("" through a proxy or hop).
        self.peer = ""
        # A channel of the jump host before this one, instead of a socket.
        self._via = via
        self._hop = hop
        self._hops: list[Hop] = []
        self._proxy: ProxyCommand | None = None
        # The socket being connected, and whether another thread gave up
        # on this connect (a tunnel stopped while it reconnects).
        self._dialing: socket.socket | None = None
        self.abandoned = False

    @property
    def timeout(self) -> float:
        return connect_timeout(self.settings)

    def open(self) -> socket.socket | paramiko.Channel:
        """The socket to the server, or with -J a channel through the last hop."""
        if self._via is not None:
            return self._via
        hops, trace = self.settings.jumps, self._trace
        if not hops and self.settings.proxy_command:
            trace(1, "Executing proxy command: exec %s", self.settings.proxy_command)
            self._proxy = ProxyCommand(self.settings.proxy_command)
            return self._proxy.start()
        if not hops:
            return self._open_socket()
        trace(2, "ProxyJump: %s", " then ".join(h.target for h in hops))
        via: paramiko.Channel | None = None
        for n, hop in enumerate(hops, 1):
            where = f"jump host {n} ({hop.target})"
            trace(1, "Connecting to %s", where)
            connection = self._hop(hop, via, trace.child(f"{where}: "))
            try:
                connection.connect()
            except TunnelError as exc:
                raise type(exc)(f"{where}: {exc}") from None
            self._hops.append(connection)
            after = hops[n] if n < len(hops) else self.settings
            trace(2, "%s: opening a direct-tcpip channel to %s", where, after.target)
            try:
                via = connection.open_tcpip(
                    after.host, after.port, ("127.0.0.1", 0), self.timeout
                )
            except TunnelError as exc:
                nxt = f"jump host {n + 1}" if n < len(hops) else "the destination"
                why = (
                    exc.detail if isinstance(exc, ForwardError) and exc.detail else exc
                )
                raise ConnectError(
                    f"{where} could not reach {nxt} ({after.target}): {why}"
                ) from None
            trace(1, "%s: channel to %s:%d open", where, after.host, after.port)
        assert via is not None
        return via

    def failure(self) -> str | None:
        # A ProxyCommand that died explains the broken connection better
        # than the handshake that saw it break.
        return self._proxy.failure() if self._proxy is not None else None

    def _open_socket(self) -> socket.socket:
        s = self.settings
        family = {
            "any": socket.AF_UNSPEC,
            "inet": socket.AF_INET,
            "inet6": socket.AF_INET6,
        }[s.address_family]
        where, trace = f"{s.host} port {s.port}", self._trace
        try:
            infos = socket.getaddrinfo(s.host, s.port, family, socket.SOCK_STREAM)
        except socket.gaierror as exc:
            trace(1, "cannot resolve %s: %s", s.host, exc.strerror)
            raise ConnectError(
                f"cannot resolve host '{s.host}': {exc.strerror}; check the name, "
                "or give it a HostName in ~/.ssh/config (or -F file)"
            ) from None
        except UnicodeError as exc:
            # Python's idna codec refused the name before any lookup.
            problem = host_name_problem(s.host) or str(exc)
            raise ConnectError(
                f"{invalid_host(s.host, problem)}; check the name, "
                "or give it a HostName in ~/.ssh/config (or -F file)"
            ) from None
        last: OSError | None = None
        if len(infos) > 1:
            found = ", ".join(str(info[4][0]) for info in infos)
            trace(2, "%s has %d addresses: %s", s.host, len(infos), found)
        for fam, kind, proto, _, addr in infos:
            trace(1, "Connecting to %s [%s] port %d.", s.host, addr[0], s.port)
            sock = socket.socket(fam, kind, proto)
            sock.settimeout(self.timeout)
            self._dialing = sock
            try:
                if self.abandoned:
                    raise ConnectionAbortedError(errno.ECONNABORTED, "abandoned")
                sock.connect(addr)
            except OSError as exc:
                sock.close()
                last = exc
                why = exc.strerror or str(exc) or type(exc).__name__
                trace(1, "connect to address %s port %d: %s", addr[0], s.port, why)
                continue
            finally:
                self._dialing = None
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tcp_keepalive(sock, s.server_alive_interval, s.server_alive_count_max)
            trace(1, "Connection established.")
            self.peer = str(addr[0])
            return sock
        assert last is not None
        if isinstance(last, TimeoutError):
            raise ConnectError(
                f"timed out after {self.timeout:g} s connecting to {where} "
                "(ConnectTimeout); check that the host is up and reachable"
            ) from None
        if last.errno == errno.ECONNREFUSED:
            raise ConnectError(
                f"connection to {where} refused: no SSH server listens there; "
                "check the host and the port (-p)"
            ) from None
        raise ConnectError(f"cannot reach {where}: {last.strerror or last}") from None

    def abandon(self) -> None:
        """Give up an open() running in another thread."""
        self.abandoned = True
        dialing = self._dialing
        if dialing is not None:
            # Wakes a connect() that waits for a SYN's answer; close() would not.
            with contextlib.suppress(OSError):
                dialing.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """End the ProxyCommand, if one ran."""
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None

    def close_hops(self) -> None:
        """Close the jump hosts' connections."""
        # The jump hosts last, the nearest one first: each carries the next.
        hops, self._hops = self._hops, []
        for hop in reversed(hops):
            hop.close()


def negotiate(
    transport: Transport,
    settings: ConnectSettings,
    host_key_types: Callable[[tuple[str, ...]], tuple[str, ...]],
    trace: Trace = QUIET,
    start: Callable[[threading.Event], None] | None = None,
) -> None:
    """Choose the ciphers (``Ciphers``, or GCM first) and the host key types
    (``host_key_types`` orders paramiko's), and run the SSH handshake (its
    log routed already, ``paramiko_log.Route``).  ``start(done)`` starts the
    transport's thread (``start_client``), or raises if it must not."""
    s = settings
    timeout = connect_timeout(s)
    options = transport.get_security_options()
    available = tuple(options.ciphers)
    if s.ciphers:
        unknown = [c for c in s.ciphers if c not in available]
        if unknown:
            raise ConnectError(
                f"cipher '{unknown[0]}' is not supported; choose from "
                + ", ".join(available)
            )
        options.ciphers = s.ciphers
    else:
        first = tuple(c for c in PREFERRED_CIPHERS if c in available)
        options.ciphers = first + tuple(c for c in available if c not in first)
    transport.host_key_types = host_key_types(transport.preferred_keys)
    if s.compression:
        transport.use_compression(True)
    transport.handshake_timeout = timeout
    transport.auth_timeout = timeout
    where = f"{s.host} port {s.port}"
    banner = s.connect_timeout or min(DEFAULT_BANNER_TIMEOUT, timeout)
    # Our waits decide, in our words.  paramiko's banner timer is set past
    # ours (it only ends its thread then), and its waiting start_client would
    # return without an error at its timeout, for the next call to fail with
    # "No existing session".
    transport.banner_timeout = banner + 5
    if trace.wants(2):
        negotiated.offered(transport, trace)
    done = threading.Event()
    if start is None:
        transport.start_client(event=done)
    else:
        start(done)
    began = time.monotonic()
    settled = _settled(transport, done, banner)
    if transport.remote_version:
        negotiated.versions(transport, trace)
    if not settled and not transport.remote_version:
        raise ConnectError(
            f"{where} did not answer as an SSH server (no SSH banner within "
            f"{banner:g} s); check the port (-p), or give a slow server longer "
            "with -o ConnectTimeout=SECONDS"
        )
    if not settled and not _settled(
        transport, done, timeout - (time.monotonic() - began)
    ):
        raise ConnectError(
            f"SSH handshake with {where} did not finish within {timeout:g} s "
            "(ConnectTimeout)"
        )
    if transport.is_active():
        negotiated.agreed(transport, trace)
        return
    exc = transport.get_exception()
    # paramiko quotes what the server sent ('Indecipherable protocol
    # version "..."'): escaped, as it ends on a terminal.
    text = escaped(str(exc) or type(exc).__name__) if exc else "negotiation failed"
    if "banner" in text.lower() or "protocol version" in text.lower():
        # A web server, say: lines that are not "SSH-2.0-...", then EOF.
        raise ConnectError(
            f"{where} did not answer as an SSH server ({text}); check the port (-p)"
        )
    raise ConnectError(f"SSH handshake with {where} failed: {text}")


def _settled(transport: Transport, done: threading.Event, seconds: float) -> bool:
    """Whether the handshake ended (done, or failed) within ``seconds``.

    ``done`` is set when it succeeds or fails on its own; a transport closed
    from outside (a connect abandoned) ends without setting it.
    """
    deadline = time.monotonic() + seconds
    while not done.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
        if not transport.is_active():
            return True
        if time.monotonic() >= deadline:
            return False
    return True
