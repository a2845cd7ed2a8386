"""One SSH connection: TCP, handshake, host-key check, authentication, channels.

With ``sshext`` (the messages paramiko lacks) and ``auth`` (logging in), the
only module that imports paramiko.  Its exceptions are turned into
nbtunnel's here, each with a sentence a person can act on.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paramiko

from ..errors import ConnectError, ForwardError, HostKeyError, TunnelError
from ..settings import known_hosts
from ..settings.resolve import ConnectSettings, Prompt
from ._paramiko.transport import (
    CANCEL_REQUEST,
    DIRECT,
    FORWARD_REQUEST,
    STREAMLOCAL_PORT,
    Transport,
)
from .auth import Login, blob_fingerprint, fingerprint, key_label
from .proxy_command import ProxyCommand

DEFAULT_CONNECT_TIMEOUT = 30.0

# paramiko ranks AES-GCM last, so by default it negotiates aes128-ctr with a
# pure-Python HMAC per packet.  GCM needs no HMAC and was the fastest cipher
# measured here for paramiko and OpenSSH alike (perf-baseline.md, "knobs").
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")

# RFC 4254 section 5.1 reason codes for a refused channel.
_OPEN_FAILURES = {
    1: "administratively prohibited",
    2: "connect failed",
    3: "unknown channel type",
    4: "resource shortage",
}


# Called with each channel the server opens for a remote forward and the
# (address, port) it came from, in a thread of its own.
IncomingHandler = Callable[[paramiko.Channel, tuple[str, int]], None]


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


class Connection:
    """One SSH connection (one paramiko Transport) and the channels it opens."""

    def __init__(
        self,
        settings: ConnectSettings,
        prompt: Prompt | None = None,
        *,
        via: paramiko.Channel | None = None,
    ) -> None:
        self.settings = settings
        # Asks the person behind the caller (a host key, a passphrase); None
        # when nobody can answer.
        self._prompt = prompt
        # A channel of the jump host before this one, instead of a socket.
        self._via = via
        self._hops: list[Connection] = []
        self._transport: Transport | None = None
        self._login: Login | None = None
        self._proxy: ProxyCommand | None = None
        self._known: known_hosts.KnownHosts | None = None
        # paramiko keeps one reply slot for global requests and one handler
        # for every incoming forwarded channel: requests are serialised, and
        # channels are routed by the address the server reports.
        self._remote_lock = threading.Lock()
        self._remote: dict[tuple[str, int], IncomingHandler] = {}
        # Told when the connection ends, from a thread that waits for it.
        self._lost_lock = threading.Lock()
        self._on_lost: list[Callable[[], None]] = []
        self._watcher: threading.Thread | None = None
        self._prober: threading.Thread | None = None
        # Why it ended, once it has: said by the tunnels that lose it.
        self._lost_reason: str | None = None
        # The socket being connected, and whether another thread gave up
        # on this connect (a tunnel stopped while it reconnects).
        self._dialing: socket.socket | None = None
        self._abandoned = False

    # -- connecting -------------------------------------------------------

    def connect(self) -> None:
        """Connect, check the host key and authenticate.

        Raises ConnectError, HostKeyError or AuthenticationError; on any
        failure nothing is left open.
        """
        try:
            sock = self._via if self._via is not None else self._jump()
            transport = Transport(sock)
            self._transport = transport
            if self._abandoned:
                raise ConnectError("the connect was abandoned")
            self._negotiate(transport)
            self._check_host_key(transport)
            self._authenticate(transport)
            # The single hook paramiko calls for every forwarded-tcpip (and,
            # through sshext, forwarded-streamlocal) channel; set directly
            # because request_port_forward() would replace it per request.
            transport._tcp_handler = self._incoming  # type: ignore[attr-defined]
            self._watcher = threading.Thread(
                target=self._watch,
                args=(transport,),
                name=f"nbtunnel-watch-{self.settings.host}",
                daemon=True,
            )
            self._watcher.start()
        except TunnelError as exc:
            proxy = self._proxy_failure() if type(exc) is ConnectError else None
            self.close()
            if proxy:
                raise ConnectError(f"{proxy} ({exc})") from None
            raise
        except (paramiko.SSHException, EOFError, OSError) as exc:
            # The steps above translate what they expect; this is the net
            # for the rest (the server hanging up mid-way, say).
            proxy = self._proxy_failure()
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

    def _jump(self) -> socket.socket | paramiko.Channel:
        """The socket to the server, or with -J a channel through the last hop."""
        hops = self.settings.jumps
        if not hops and self.settings.proxy_command:
            self._proxy = ProxyCommand(self.settings.proxy_command)
            return self._proxy.start()
        if not hops:
            return self._open_socket()
        via: paramiko.Channel | None = None
        for n, hop in enumerate(hops, 1):
            connection = Connection(hop, self._prompt, via=via)
            where = f"jump host {n} ({hop.target})"
            try:
                connection.connect()
            except TunnelError as exc:
                raise type(exc)(f"{where}: {exc}") from None
            self._hops.append(connection)
            after = hops[n] if n < len(hops) else self.settings
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
        assert via is not None
        return via

    def _proxy_failure(self) -> str | None:
        # A ProxyCommand that died explains the broken connection better
        # than the handshake that saw it break.
        return self._proxy.failure() if self._proxy is not None else None

    @property
    def timeout(self) -> float:
        return self.settings.connect_timeout or DEFAULT_CONNECT_TIMEOUT

    def _open_socket(self) -> socket.socket:
        s = self.settings
        family = {
            "any": socket.AF_UNSPEC,
            "inet": socket.AF_INET,
            "inet6": socket.AF_INET6,
        }[s.address_family]
        where = f"{s.host} port {s.port}"
        try:
            infos = socket.getaddrinfo(s.host, s.port, family, socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ConnectError(
                f"cannot resolve host '{s.host}': {exc.strerror}; check the name, "
                "or give it a HostName in ~/.ssh/config (or -F file)"
            ) from None
        last: OSError | None = None
        for fam, kind, proto, _, addr in infos:
            sock = socket.socket(fam, kind, proto)
            sock.settimeout(self.timeout)
            self._dialing = sock
            try:
                if self._abandoned:
                    raise ConnectionAbortedError(errno.ECONNABORTED, "abandoned")
                sock.connect(addr)
            except OSError as exc:
                sock.close()
                last = exc
                continue
            finally:
                self._dialing = None
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _keep_alive(sock, s.server_alive_interval, s.server_alive_count_max)
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

    def _host_key_types(self, offered: tuple[str, ...]) -> tuple[str, ...]:
        """paramiko's host key types, those we can check first, as ssh orders them.

        Otherwise a server with several host keys could present one nobody
        has seen.  An RSA key is stored as "ssh-rsa" but signed with
        rsa-sha2-* (sshd 8.8+ refuses SHA-1 "ssh-rsa" signatures).
        """
        s = self.settings
        hosts = self._known_hosts()
        known = hosts.keys_for(s.host, s.port)
        rsa = "ssh-rsa" in known
        plain = [
            t for t in offered if t in known or (rsa and t.startswith("rsa-sha2-"))
        ]
        certs: list[str] = []
        if hosts.authorities(s.host, s.port):
            # A host vouched for by a CA is asked for its certificate.
            certs = [t for t in offered if t.endswith("-cert-v01@openssh.com")]
        first = [*certs, *plain]
        return tuple(first) + tuple(t for t in offered if t not in first)

    def _negotiate(self, transport: Transport) -> None:
        s = self.settings
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
        transport.host_key_types = self._host_key_types(transport.preferred_keys)
        if s.compression:
            transport.use_compression(True)
        transport.banner_timeout = self.timeout
        transport.handshake_timeout = self.timeout
        transport.auth_timeout = self.timeout
        try:
            transport.start_client(timeout=self.timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            where = f"{s.host} port {s.port}"
            text = str(exc) or type(exc).__name__
            if "banner" in text.lower():
                raise ConnectError(
                    f"{where} did not answer as an SSH server ({text}); "
                    "check the port (-p)"
                ) from None
            raise ConnectError(f"SSH handshake with {where} failed: {text}") from None

    # -- host keys ------------------------------------------------------

    def _known_hosts(self) -> known_hosts.KnownHosts:
        if self._known is None:
            try:
                self._known = known_hosts.KnownHosts.load(
                    self.settings.known_hosts_files
                )
            except OSError as exc:
                raise HostKeyError(
                    f"cannot read known hosts file {exc.filename}: "
                    f"{exc.strerror or exc}"
                ) from None
        return self._known

    def _check_host_key(self, transport: paramiko.Transport) -> None:
        s = self.settings
        key = transport.get_remote_server_key()
        hosts = self._known_hosts()
        name = s.known_hosts_name
        blob = key.asbytes()
        revoked = hosts.revoked(s.host, s.port, blob)
        how = ""
        if revoked is None and key.public_blob is not None:
            # As ssh (hostfile.c, check_key_not_revoked): revoking a CA revokes
            # every certificate it signed, whatever else the files trust.
            signer = _signer(key.public_blob.key_blob)
            if signer is not None:
                revoked = hosts.revoked(s.host, s.port, signer)
                how = " through the certificate authority that signed it"
        if revoked is not None:
            raise HostKeyError(
                f"the host key of {name} ({key_label(key)} {fingerprint(key)}) is "
                f"REVOKED{how} ({revoked.path} line {revoked.line}); nbtunnel will "
                "not connect with it"
            )
        why_not_cert = ""
        if key.public_blob is not None:
            why_not_cert = self._check_certificate(key.public_blob.key_blob)
            if not why_not_cert:
                return
        known = hosts.keys_for(s.host, s.port)
        label = f"{key_label(key)} key {fingerprint(key)}"
        if blob in known.get(key.get_name(), ()):
            return
        if why_not_cert:
            why_not_cert = f" Its certificate was not accepted: {why_not_cert}."
        where = s.known_hosts
        if key.get_name() in known:
            old = known[key.get_name()][0]
            raise HostKeyError(
                f"the host key of {name} has CHANGED: the server shows {label}, "
                f"but the known hosts have {blob_fingerprint(old)}. Someone may be "
                "intercepting the connection, or the server was reinstalled. "
                "nbtunnel never accepts a changed key; if the change is "
                f'expected, remove the old one with: ssh-keygen -R "{name}" '
                f"-f {where}"
            )
        if known:
            raise HostKeyError(
                f"{name} presented the {label}, but the known hosts know it only "
                f"by other key types ({', '.join(sorted(known))}); refusing "
                "rather than trusting a key nobody has seen." + why_not_cert
            )
        mode = s.strict_host_key_checking
        if mode == "ask" and self._prompt is not None and not s.batch_mode:
            self._ask_host_key(name, key)
        elif mode in ("yes", "ask"):
            nobody = " Nobody could be asked about it here." if mode == "ask" else ""
            raise HostKeyError(
                f"the host key of {name} is unknown: {label}.{why_not_cert}{nobody} "
                "If that fingerprint is the server's, accept and record it with "
                f"-o StrictHostKeyChecking=accept-new (into {where})"
            )
        self._record_host_key(name, key)

    def _check_certificate(self, blob: bytes) -> str:
        """Why the server's host certificate is not to be trusted ("" if it is):
        signed by a ``@cert-authority`` of this host, for this host, in date."""
        s = self.settings
        try:
            cert = known_hosts.parse_certificate(blob)
        except ValueError as exc:
            return f"it cannot be read ({exc})"
        authorities = {e.blob for e in self._known_hosts().authorities(s.host, s.port)}
        if cert.signature_key not in authorities:
            return "no @cert-authority line for this host names its signer"
        if cert.cert_type != known_hosts.CERT_HOST:
            return "it is a user certificate, not a host one"
        if cert.principals and s.host.lower() not in (
            p.lower() for p in cert.principals
        ):
            return f"it names {', '.join(cert.principals)}, not {s.host}"
        if not cert.valid_at(time.time()):
            return "it is expired or not yet valid"
        try:
            ca_type = paramiko.Message(cert.signature_key).get_text()
            ca = paramiko.PKey.from_type_string(ca_type, cert.signature_key)
            if ca.verify_ssh_sig(cert.signed_data, paramiko.Message(cert.signature)):
                return ""
        except (paramiko.SSHException, ValueError) as exc:
            return f"its signature cannot be checked ({exc})"
        return "its signature does not verify"

    def _ask_host_key(self, name: str, key: paramiko.PKey) -> None:
        assert self._prompt is not None
        print_ = fingerprint(key)
        # OpenSSH's own question, so the answer people know works here too.
        question = (
            f"The authenticity of host '{name}' can't be established.\n"
            f"{key_label(key)} key fingerprint is {print_}.\n"
            "This key is not known by any other names.\n"
            "Are you sure you want to continue connecting (yes/no/[fingerprint])? "
        )
        for _ in range(3):
            answer = self._prompt(question, False)
            if answer is None:
                raise HostKeyError(
                    f"the host key of {name} ({print_}) is unknown and nobody "
                    "answered whether to trust it"
                )
            answer = answer.strip()
            if answer.lower() == "yes" or answer == print_:
                return
            if answer.lower() == "no":
                raise HostKeyError(
                    f"the host key of {name} ({print_}) was refused: you answered no"
                )
            question = "Please type 'yes', 'no' or the fingerprint: "
        raise HostKeyError(
            f"the host key of {name} ({print_}) was not accepted: no answer was "
            "'yes', 'no' or the fingerprint"
        )

    def _record_host_key(self, name: str, key: paramiko.PKey) -> None:
        path = self.settings.known_hosts
        if not path or path == os.devnull:
            return
        try:
            known_hosts.append(
                path,
                name,
                key.get_name(),
                key.asbytes(),
                hashed=self.settings.hash_known_hosts,
            )
        except OSError as exc:
            raise HostKeyError(
                f"cannot record the host key of {name} in {path}: {exc.strerror}"
            ) from None

    # -- authentication ---------------------------------------------------

    def _authenticate(self, transport: paramiko.Transport) -> None:
        self._login = Login(self.settings, self._prompt, self.timeout)
        self._login.run(transport)

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

    def open_tcpip(
        self, host: str, port: int, origin: tuple[str, int], timeout: float
    ) -> paramiko.Channel:
        """Open a ``direct-tcpip`` channel: the server connects to host:port."""
        t = self._live()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return self._open_channel(
            where,
            timeout,
            lambda: t.open("direct-tcpip", (host, port, *origin), timeout),
        )

    def open_streamlocal(self, path: str, timeout: float) -> paramiko.Channel:
        """Open a ``direct-streamlocal`` channel: the server connects to a unix socket."""
        t = self._live()
        return self._open_channel(
            f"the unix socket {path}",
            timeout,
            lambda: t.open(DIRECT, (path, "", 0), timeout),
        )

    def _open_channel(
        self, where: str, timeout: float, opener: Callable[[], paramiko.Channel]
    ) -> paramiko.Channel:
        try:
            return opener()
        except paramiko.ChannelException as exc:
            reason = exc.text or _OPEN_FAILURES.get(exc.code, f"code {exc.code}")
            hint = ""
            if exc.code == 1:
                hint = (
                    "; the server's sshd_config forbids it (AllowTcpForwarding, "
                    "AllowStreamLocalForwarding, PermitOpen)"
                )
            raise ForwardError(
                f"the server could not connect to {where} as the target: {reason}{hint}",
                code=exc.code,
                detail=exc.text,
            ) from None
        except paramiko.SSHException as exc:
            if "timeout" in str(exc).lower():
                raise ForwardError(
                    f"the server did not connect to {where} within {timeout:g} s",
                    code=0,
                ) from None
            raise ConnectError(
                f"the SSH connection to {self.settings.target} was lost: {exc}"
            ) from None
        except (EOFError, OSError) as exc:
            raise ConnectError(
                f"the SSH connection to {self.settings.target} was lost: {exc}"
            ) from None

    # -- remote forwards ----------------------------------------------------

    def listen_remote(
        self, address: str, port: int | None, handler: IncomingHandler
    ) -> RemoteListener:
        """Ask the server to listen (``tcpip-forward``, or for a unix socket
        ``streamlocal-forward``: ``port`` None and ``address`` the path).

        ``handler(channel, origin)`` then runs in a thread of its own for each
        connection made there.  Raises ForwardError if the server refuses.
        """
        t = self._live()
        with self._remote_lock:
            try:
                if port is None:
                    reply = t.global_request(
                        FORWARD_REQUEST, (address,), timeout=self.timeout
                    )
                    listener = RemoteListener(address, None)
                else:
                    reply = t.global_request(
                        "tcpip-forward", (address, port), timeout=self.timeout
                    )
                    bound = reply.get_int() if reply is not None and port == 0 else port
                    listener = RemoteListener(address, bound)
            except TimeoutError:
                where = RemoteListener(address, port).text
                raise ForwardError(
                    f"the server did not answer the request to listen on {where} "
                    f"(-R) within {self.timeout:g} s"
                ) from None
            if reply is None:
                self._live()  # a lost connection is said as such
                raise ForwardError(_refusal(address, port))
            # Registered before the lock is released: a connection arriving
            # right after the reply waits in _route() for it.
            self._remote[listener._key] = handler
        return listener

    def cancel_remote(self, address: str, port: int | None) -> None:
        """Stop routing what listen_remote() set up, and ask the server to close it.

        Sent without waiting for the reply: stopping must not hang on a
        server that no longer answers.
        """
        listener = RemoteListener(address, port)
        with self._remote_lock:
            self._remote.pop(listener._key, None)
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
        threading.Thread(
            target=self._route,
            args=(chan, origin, server),
            name=f"nbtunnel-remote-{server[1]}",
            daemon=True,
        ).start()

    def _route(
        self,
        chan: paramiko.Channel,
        origin: tuple[str, int],
        server: tuple[str, int],
    ) -> None:
        with self._remote_lock:
            handler = self._remote.get(server)
            if handler is None:
                # The server may report the address in another spelling
                # than was asked ("" for "*", say); the port still decides.
                same_port = [h for (_, p), h in self._remote.items() if p == server[1]]
                handler = same_port[0] if len(same_port) == 1 else None
        if handler is None:
            chan.close()
            return
        handler(chan, origin)

    def on_lost(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (once, from another thread) when the connection ends,
        for whatever reason; returns what unsubscribes it."""
        with self._lost_lock:
            self._on_lost.append(callback)

        def cancel() -> None:
            with self._lost_lock:
                if callback in self._on_lost:
                    self._on_lost.remove(callback)

        return cancel

    @property
    def lost_reason(self) -> str:
        """Why the connection ended, in words, once it has."""
        return self._lost_reason or "the connection was closed"

    def _watch(self, transport: Transport) -> None:
        interval = self.settings.server_alive_interval
        if interval > 0:
            self._check_alive(transport, interval, self.settings.server_alive_count_max)
        transport.join()
        if self._lost_reason is None:
            exc = transport.get_exception()
            self._lost_reason = (
                "the server closed the connection"
                if exc is None or isinstance(exc, EOFError)
                else str(exc) or type(exc).__name__
            )
        with self._lost_lock:
            callbacks, self._on_lost = self._on_lost, []
        for callback in callbacks:
            callback()

    def _check_alive(self, transport: Transport, interval: int, count_max: int) -> None:
        """ServerAliveInterval and ServerAliveCountMax as ssh means them.

        After ``interval`` seconds without a packet from the server, a probe
        that wants a reply; another each ``interval`` after that; when
        ``count_max`` probes went unanswered, the server counts as dead and
        the connection is closed.  Anything the server sends counts as an
        answer.  Probes are sent from a thread of their own: a send can
        block on a dead network, and this check must not.
        """
        tick = min(1.0, interval / 4)
        probes, heard = 0, transport.last_received
        while transport.is_active():
            transport.join(tick)
            if transport.last_received != heard:
                probes, heard = 0, transport.last_received
            silent = time.monotonic() - heard
            if not transport.is_active() or silent < interval * (probes + 1):
                continue
            if probes >= count_max:
                self._lost_reason = (
                    f"the server did not answer for {silent:.0f} s "
                    f"(ServerAliveInterval {interval}, ServerAliveCountMax "
                    f"{count_max}); the network or the server is down"
                )
                transport.close()
                return
            probes += 1
            if self._prober is None or not self._prober.is_alive():
                self._prober = threading.Thread(
                    target=_probe,
                    args=(transport,),
                    name=f"nbtunnel-alive-{self.settings.host}",
                    daemon=True,
                )
                self._prober.start()

    def abandon(self) -> None:
        """Give up a connect() running in another thread (it raises ConnectError)."""
        self._abandoned = True
        dialing = self._dialing
        if dialing is not None:
            # Wakes a connect() that waits for a SYN's answer; close() would not.
            with contextlib.suppress(OSError):
                dialing.shutdown(socket.SHUT_RDWR)
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
        if self._login is not None:
            self._login.close()
            self._login = None
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None
        for thread in (self._watcher, self._prober):
            if thread is not None and thread is not threading.current_thread():
                thread.join(5.0)
        self._watcher = self._prober = None
        # The jump hosts last, the nearest one first: each carries the next.
        hops, self._hops = self._hops, []
        for hop in reversed(hops):
            hop.close()


def _probe(transport: Transport) -> None:
    # A failed send means the connection is ending, which the check sees.
    with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
        transport.probe()


def _keep_alive(sock: socket.socket, interval: int, count_max: int) -> None:
    """TCP keepalive on the SSH socket, on ServerAliveInterval's schedule.

    It notices a peer that is gone (a rebooted host answers with a reset)
    even while the SSH layer is busy or turned off.
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if interval <= 0:
        return
    for name, value in (
        ("TCP_KEEPIDLE", interval),
        ("TCP_KEEPINTVL", interval),
        ("TCP_KEEPCNT", max(1, count_max)),
    ):
        option = getattr(socket, name, None)
        if option is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, option, value)


def _signer(cert_blob: bytes) -> bytes | None:
    """The CA key blob of a host certificate, None if it cannot be read."""
    try:
        return known_hosts.parse_certificate(cert_blob).signature_key
    except ValueError:
        return None


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
