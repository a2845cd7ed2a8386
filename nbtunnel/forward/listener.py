"""Listening sockets on this machine (TCP on IPv4/IPv6, or a unix socket) and their accept loop."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import stat
from typing import Literal

from ..errors import ForwardError
from ..grammar.forwards import bracketed
from ..grammar.hostnames import host_name_problem, invalid_host
from ..platform import limits, sockets
from .accept import Accepted, AcceptLoop, Refused

# ssh listens with a backlog of 128 and socketserver with 5; measured, a
# burst of a few hundred connects overflowed both and the clients got
# resets.  The kernel caps it at somaxconn.
BACKLOG = 4096

Family = Literal["any", "inet", "inet6"]


def _bind_addresses(
    host: str | None, port: int, *, gateway_ports: bool, family: Family
) -> list[tuple[int, str]]:
    """The (family, address) pairs to bind, following ssh's rules for -L.

    No bind address means loopback (every interface with -g); ``localhost``
    means loopback too, on both IPv4 and IPv6; ``*`` means every interface.
    """
    wildcard = host == "*" or (host is None and gateway_ports)
    pairs: list[tuple[int, str]]
    if wildcard:
        pairs = [(socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")]
    elif host is None or host == "localhost":
        pairs = [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
    else:
        try:
            infos = socket.getaddrinfo(
                host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
            )
        except socket.gaierror as exc:
            raise ForwardError(
                f"cannot listen on '{host}': no such address on this machine "
                f"({exc.strerror})"
            ) from None
        except UnicodeError as exc:  # the idna codec refused the name
            problem = host_name_problem(host) or str(exc)
            raise ForwardError(invalid_host(host, problem)) from None
        pairs = list(dict.fromkeys((info[0], str(info[4][0])) for info in infos))
    if family == "inet":
        pairs = [p for p in pairs if p[0] == socket.AF_INET]
    elif family == "inet6":
        pairs = [p for p in pairs if p[0] == socket.AF_INET6]
    return pairs


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _bind_error(
    address: str, port: int, exc: OSError, shared: bool = False
) -> ForwardError:
    message = f"cannot listen on {bracketed(address)} port {port}: {exc.strerror}"
    shortage = limits.shortage(exc)
    if shortage is not None:
        message = f"cannot listen on {bracketed(address)} port {port}: {shortage}"
    elif exc.errno == errno.EADDRINUSE and port == 0:
        message += (
            "; this machine has no free port left to give (see ip_local_port_range)"
        )
    elif exc.errno == errno.EADDRINUSE and shared:
        message += (
            "; ReusePort shares a port only with this user's processes that ask"
            " the same, on loopback, where the system has SO_REUSEPORT"
            " (one Dask worker process per machine otherwise)"
        )
    elif exc.errno == errno.EADDRINUSE:
        message += (
            "; another program (or another tunnel) already listens there: "
            "pick another port, or 0 for any free port"
        )
    elif exc.errno == errno.EACCES and 0 < port < 1024:
        message += (
            "; only root may listen on ports below 1024 on this machine: "
            "use 0 for any free port"
        )
    elif exc.errno == errno.EADDRNOTAVAIL:
        message += f"; this machine has no address {address}"
    return ForwardError(message)


def _listen_tcp(
    family: int, address: str, port: int, shared: bool = False
) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # A port that served a connection sits in TIME_WAIT for a minute:
        # re-running the same cell after a restart must still bind it, and
        # no other program may bind it while we listen (but, with
        # ReusePort, this user's other processes that ask the same).
        if shared:
            sockets.shared_port(sock)
        else:
            sockets.exclusive_address(sock)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def _exposed_directory(path: str) -> str | None:
    """Why others could swap the socket at ``path`` for their own, or None.

    Its mode 0600 keeps other users from connecting, but whoever may write
    to its directory (without the sticky bit, as /tmp has) may rename it
    away and listen there in its place.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        st = os.stat(directory)
    except OSError:
        return None
    getuid = getattr(os, "getuid", None)
    foreign = getuid is not None and st.st_uid not in (getuid(), 0)
    open_to_others = st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX
    if not (foreign or open_to_others):
        return None
    whose = "belongs to another user" if foreign else "other users may write to it"
    return (
        f"the socket's directory {directory} {whose} (mode "
        f"{stat.S_IMODE(st.st_mode):04o}): they could replace the socket; "
        "put it in a directory only you can write to"
    )


# Tries at a port free in every family the listener binds (port 0).
PORT_ATTEMPTS = 8


class _SecondFamilyTaken(ForwardError):
    """The port the first family got is in use in the second one."""


class Listener:
    """One or more listening sockets for one forward, and the thread accepting on them.

    ``on_accept(sock, origin)`` runs in the accept thread for every new
    connection and must hand the socket on quickly.
    """

    def __init__(
        self,
        *,
        host: str | None = None,
        port: int | None = None,
        path: str | None = None,
        gateway_ports: bool = False,
        family: Family = "any",
        shared: bool = False,
    ) -> None:
        self._shared = shared  # ReusePort: this user's others may listen too
        self._host = host
        self._port = port
        self._path = path
        self._gateway_ports = gateway_ports
        self._family = family
        self._socks: list[socket.socket] = []
        self._unix_inode: tuple[int, int] | None = None
        self._loop: AcceptLoop | None = None
        self.listen_host: str | None = None
        self.listen_port: int | None = None
        self.listen_path: str | None = path
        self.listen_addresses: tuple[str, ...] = ()
        # Said in the forward's note: a unix socket others could replace.
        self.warning: str | None = None

    def bind(self) -> None:
        """Open the listening sockets; raises ForwardError naming the address."""
        try:
            if self._path is not None:
                self._bind_unix(self._path)
            elif self._port:
                self._bind_tcp(self._port)
            else:
                self._bind_any_port()
        except BaseException:
            self._close_sockets()
            raise

    def _bind_any_port(self) -> None:
        # The port the first family got may be taken in the second (IPv6
        # ports are allocated apart from IPv4's): try again, where ssh would
        # settle for fewer addresses.  The refused first sockets are held
        # until the end, so the system cannot offer the same port twice.
        held: list[socket.socket] = []
        try:
            for _ in range(PORT_ATTEMPTS - 1):
                try:
                    self._bind_tcp(0)
                    return
                except _SecondFamilyTaken:
                    held += self._socks
                    self._socks.clear()
            self._bind_tcp(0)
        finally:
            for sock in held:
                sock.close()

    def _bind_tcp(self, port: int) -> None:
        pairs = _bind_addresses(
            self._host, port, gateway_ports=self._gateway_ports, family=self._family
        )
        if not pairs:
            raise ForwardError(
                f"cannot listen on '{self._host}' port {port}: it has no address "
                f"of the family asked for (-4/-6)"
            )
        for i, (family, address) in enumerate(pairs):
            try:
                # Shared only on loopback: a wildcard port is one that some
                # systems (the BSDs) let another user join.
                shared = self._shared and _is_loopback(address)
                sock = _listen_tcp(family, address, port, shared)
            except OSError as exc:
                # The loopback/wildcard pair includes IPv6, which a machine
                # may lack; that is no reason to fail when IPv4 bound.
                optional = i > 0 and self._host in (None, "localhost", "*")
                if optional and exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    continue
                if i > 0 and not self._port and exc.errno == errno.EADDRINUSE:
                    raise _SecondFamilyTaken(
                        str(_bind_error(address, port, exc))
                    ) from None
                raise _bind_error(address, port, exc, self._shared) from None
            if port == 0:
                # The other addresses take the same port, as ssh does, so
                # "localhost:PORT" means one forward whatever it resolves to.
                port = sock.getsockname()[1]
            self._socks.append(sock)
        self.listen_port = port
        self.listen_addresses = tuple(str(s.getsockname()[0]) for s in self._socks)
        # The first address (IPv4 where there is one) is the one to hand to
        # clients: "127.0.0.1" works whatever "localhost" resolves to.
        self.listen_host = self.listen_addresses[0]

    def _bind_unix(self, path: str) -> None:
        if os.path.lexists(path):
            raise ForwardError(
                f"cannot listen on unix socket {path}: the file already exists; "
                "remove it, or choose another path"
            )
        family = sockets.unix_family()
        if family is None:
            raise ForwardError(
                f"cannot listen on unix socket {path}: unix-socket forwards are "
                "not supported on this system (Windows); use a TCP port"
            )
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            why = limits.shortage(exc) or exc.strerror
            raise ForwardError(f"cannot listen on unix socket {path}: {why}") from None
        try:
            sock.bind(path)
            # Same as ssh's default StreamLocalBindMask 0177: only the owner
            # may connect to a forward of theirs.
            os.chmod(path, 0o600)
            sock.listen(BACKLOG)
        except OSError as exc:
            sock.close()
            why = limits.shortage(exc) or exc.strerror
            raise ForwardError(f"cannot listen on unix socket {path}: {why}") from None
        st = os.stat(path)
        self._unix_inode = (st.st_dev, st.st_ino)
        self._socks.append(sock)
        self.warning = _exposed_directory(path)

    def start(self, on_accept: Accepted, on_refused: Refused | None = None) -> None:
        """Start accepting in a daemon thread; raises ForwardError (the bind
        undone) when the system will not give the loop what it needs.

        ``on_refused(why)`` is called, in the accept thread, for each client
        refused for want of descriptors or threads (see forward/accept.py).
        """
        where = self._where()
        try:
            loop = AcceptLoop(
                self._socks, f"nbtunnel-accept-{where}", on_accept, on_refused
            )
        except OSError as exc:
            self._close_sockets()
            why = limits.shortage(exc) or exc.strerror or str(exc)
            raise ForwardError(f"cannot accept on {where}: {why}") from None
        try:
            loop.start()
        except RuntimeError as exc:
            loop.close()
            self._close_sockets()
            why = limits.shortage(exc) or str(exc)
            raise ForwardError(f"cannot accept on {where}: {why}") from None
        self._loop = loop

    def _where(self) -> str:
        if self.listen_path is not None:
            return self.listen_path
        return f"port {self.listen_port}"

    def close(self) -> None:
        """Stop accepting, close the sockets and remove a unix socket file. Idempotent."""
        if self._loop is not None:
            self._loop.close()
            self._loop = None
        self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in self._socks:
            sock.close()
        self._socks.clear()
        if self._path is not None and self._unix_inode is not None:
            # Only remove the file if it is still the socket we made.
            with contextlib.suppress(OSError):
                st = os.lstat(self._path)
                if (
                    stat.S_ISSOCK(st.st_mode)
                    and (st.st_dev, st.st_ino) == self._unix_inode
                ):
                    os.unlink(self._path)
            self._unix_inode = None
