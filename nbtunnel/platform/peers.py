"""Which user is on the other end of a loopback TCP connection.

On a shared machine (a JupyterHub, an HPC login node) loopback is shared by
every user: anyone can connect to a forward listening on 127.0.0.1.  The
kernel knows which user owns each socket, and this asks it about the one
socket wanted, the client's end of an accepted connection:

- Linux's sock_diag netlink (what ``ss`` uses), asked for exactly that
  connection by its addresses and ports: one request and one answer (about
  20 µs) however many sockets the machine has, and no privilege needed;
- else ``/proc/net/tcp`` and ``tcp6`` (PuTTY's way), read line by line up
  to the entry;
- else (macOS, Windows) nothing can tell, and :func:`why_unknown` says so.

Which of them works is found out once, on a loopback connection of our
own, rather than from the system's name.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

from . import limits

# linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 0x1
_NLMSG_ERROR = 2
_ALL_STATES = 0xFFFFFFFF
_NO_COOKIE = 0xFFFFFFFF
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
# inet_diag_msg after its header: family, state, timer, retrans, the 48-byte
# inet_diag_sockid, expires, rqueue, wqueue, then the uid we want.
_STATE_AT = _HEADER.size + 1
_SOCKID_AT = _HEADER.size + 4
_UID_AT = _SOCKID_AT + 48 + 12  # then the inode
# States that are not a client's end: a lookup whose client is gone may
# fall back to a listener on the client's port (the kernel's own lookup).
_LISTEN, _NEW_SYN_RECV = 10, 12

Address = tuple[int, str, int]  # family, host, port
Entry = tuple[int, int, int]  # state, uid, inode
Lookup = Callable[[Address, Address], "Entry | None"]


class Unknowable(OSError):
    """The system did not answer (as opposed to: no such connection)."""


def _netlink(client: Address, server: Address) -> Entry | None:
    family, client_host, client_port = client
    _, server_host, server_port = server
    ends = (
        struct.pack("!HH", client_port, server_port)
        + socket.inet_pton(family, client_host).ljust(16, b"\0")
        + socket.inet_pton(family, server_host).ljust(16, b"\0")
    )
    request = (
        struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, _ALL_STATES)
        + ends
        + struct.pack("=III", 0, _NO_COOKIE, _NO_COOKIE)
    )
    header = _HEADER.pack(
        _HEADER.size + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0
    )
    try:
        answer = _ask_kernel(header + request)
    except OSError as exc:
        raise Unknowable(exc.errno, f"sock_diag: {exc}") from None
    if len(answer) < _HEADER.size:
        raise Unknowable(errno.EPROTO, "sock_diag: a short answer")
    kind = _HEADER.unpack_from(answer)[1]
    if kind == _NLMSG_ERROR:
        (code,) = struct.unpack_from("=i", answer, _HEADER.size)
        if -code == errno.ENOENT:
            return None  # no such connection (any more)
        raise Unknowable(-code, f"sock_diag: {os.strerror(-code)}")
    if kind != _SOCK_DIAG_BY_FAMILY or len(answer) < _UID_AT + 8:
        raise Unknowable(errno.EPROTO, "sock_diag: not the answer asked for")
    if answer[_SOCKID_AT : _SOCKID_AT + len(ends)] != ends:
        return None  # another socket than the client's end (see _LISTEN)
    uid, inode = struct.unpack_from("=II", answer, _UID_AT)
    return answer[_STATE_AT], uid, inode


def _ask_kernel(message: bytes) -> bytes:
    """One sock_diag request and its answer, on a netlink socket of its own.

    Out of descriptors (the process's limit reached: a flood of clients),
    the process's spare one is given up for the moment (limits.RESERVE), so
    that a shortage refuses clients as a shortage, not as strangers.
    """

    def ask() -> bytes:
        with socket.socket(
            socket.AF_NETLINK,  # type: ignore[attr-defined,unused-ignore]
            socket.SOCK_DGRAM,
            _NETLINK_SOCK_DIAG,
        ) as nl:
            nl.settimeout(1.0)
            nl.sendto(message, (0, 0))
            return nl.recv(4096)

    try:
        return ask()
    except OSError as exc:
        if exc.errno not in (errno.EMFILE, errno.ENFILE):
            raise
        answers: list[bytes] = []

        def with_the_spare() -> bool:
            answers.append(ask())
            return True

        if limits.RESERVE.spend(with_the_spare):
            return answers[0]
        raise


def _proc_address(family: int, host: str, port: int) -> str:
    """An address as /proc/net/tcp writes it: 32-bit words in host order, hex."""
    packed = socket.inet_pton(family, host)
    words = struct.unpack(f"={len(packed) // 4}I", packed)
    return "".join(f"{word:08X}" for word in words) + f":{port:04X}"


def _proc(client: Address, server: Address) -> Entry | None:
    family = client[0]
    name = "/proc/net/tcp6" if family == socket.AF_INET6 else "/proc/net/tcp"
    local, remote = _proc_address(*client), _proc_address(*server)
    try:
        with open(name, encoding="ascii") as table:
            next(table, None)  # the column names
            for line in table:
                # sl local rem st queues timer retransmits uid timeout inode
                fields = line.split()
                if len(fields) > 9 and fields[1] == local and fields[2] == remote:
                    return int(fields[3], 16), int(fields[7]), int(fields[9])
    except (OSError, ValueError) as exc:
        raise Unknowable(errno.EIO, f"{name}: {exc}") from None
    return None


_NO_OWNERS = "this system does not say which user owns a connection"
_lock = threading.Lock()
_chosen: list[Lookup | str] = []  # the lookup that works, or why none does


def _choose() -> Lookup | str:
    with _lock:
        if not _chosen:
            found = _probe()
            if isinstance(found, _Retry):
                return str(found)  # out of descriptors, say: ask again later
            _chosen.append(found)
        return _chosen[0]


class _Retry(str):
    """Why the probe could not run this time (not why it never can)."""


def _probe() -> Lookup | str:
    """The first lookup that finds our own uid on a loopback connection."""
    uid = my_uid()
    if uid is None:
        return _NO_OWNERS
    try:
        with (
            socket.create_server(("127.0.0.1", 0)) as server,
            socket.create_connection(server.getsockname(), timeout=2) as client,
        ):
            server.settimeout(2)
            accepted, peer = server.accept()
            while peer != client.getsockname():
                accepted.close()  # someone else's, in between: not the probe
                accepted, peer = server.accept()
            with accepted:
                ends = _ends(accepted)
                for lookup in (_netlink, _proc):
                    try:
                        if _owner(lookup(*ends)) == uid:
                            return lookup
                    except (Unknowable, AttributeError, ValueError):
                        continue  # AttributeError: no AF_NETLINK here
    except OSError as exc:
        return _Retry(f"no loopback connection to try it on ({exc})")
    return _NO_OWNERS


def _ends(conn: socket.socket) -> tuple[Address, Address]:
    """(the client's end, ours) of an accepted connection, as the kernel
    files them: a v4-mapped IPv6 peer is an IPv4 socket on its side."""
    ours = conn.getsockname()
    peer = conn.getpeername()
    family = conn.family
    if family == socket.AF_INET6:
        mapped = ipaddress.IPv6Address(peer[0].split("%")[0]).ipv4_mapped
        if mapped is not None:
            mine = ipaddress.IPv6Address(ours[0].split("%")[0]).ipv4_mapped
            if mine is not None:
                return (
                    (socket.AF_INET, str(mapped), peer[1]),
                    (socket.AF_INET, str(mine), ours[1]),
                )
    return (family, peer[0].split("%")[0], peer[1]), (
        family,
        ours[0].split("%")[0],
        ours[1],
    )


def _owner(entry: Entry | None) -> int | None:
    """The uid of the process holding the client's end; None if none does.

    A client that closed its end before we asked may have left the kernel
    only a time-wait stub: uid 0 and no inode, whoever it was.  That is no
    one's, not root's (a root engine would otherwise admit anybody who
    closes fast enough); an end that lost its process but not its owner
    (unsent data) keeps its uid.
    """
    if entry is None:
        return None
    state, uid, inode = entry
    if state in (_LISTEN, _NEW_SYN_RECV) or (uid == 0 and inode == 0):
        return None
    return uid


def why_unknown() -> str | None:
    """None where :func:`peer_uid` can tell who connected; else why not."""
    chosen = _choose()
    if isinstance(chosen, str) and not isinstance(chosen, _Retry):
        return chosen
    return None  # it can, or it may: peer_uid() raises until it does


def peer_uid(conn: socket.socket) -> int | None:
    """The uid owning the other end of ``conn``, an accepted loopback TCP
    connection; None if that end is gone already.  Raises :class:`Unknowable`
    where the system cannot tell (see :func:`why_unknown`) or did not answer."""
    chosen = _choose()
    if isinstance(chosen, str):
        raise Unknowable(errno.ENOSYS, chosen)
    return _owner(chosen(*_ends(conn)))


def my_uid() -> int | None:
    """This process's user id (None where the system has none: Windows)."""
    getuid: Callable[[], int] | None = getattr(os, "getuid", None)
    return getuid() if getuid is not None else None


@functools.lru_cache(maxsize=64)
def user_name(uid: int) -> str:
    """``name (uid N)`` where the user database knows the uid, else ``uid N``."""
    try:
        import pwd  # POSIX only

        entry: Any = pwd.getpwuid(uid)
        return f"{entry.pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def is_loopback(host: str) -> bool:
    """Whether a listen address is a loopback one (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # a dual-stack socket's IPv4 client
    return address.is_loopback
