"""Plain-socket clients for the targets, usable directly or through a forward."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import ipaddress
import json
import selectors
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from . import procs
from .data import chunks, expected_sha256
from .sshd import SshServer, free_port

__all__ = [
    "echo_at_once",
    "echo_many",
    "echo_roundtrip",
    "echo_roundtrip_unix",
    "expected_sha256",
    "free_port",
    "http_get",
    "on_server",
    "port_is_closed",
    "recv_all",
    "sink_upload",
    "socks_connect",
    "socks_echo",
    "source_download",
    "tcp_connections",
    "wait_until",
]

SEND_CHUNK = 64 * 1024
RECV = 256 * 1024
T = TypeVar("T")


def _read_to_eof(
    sock: socket.socket, deadline: float, sink: Callable[[bytes], None]
) -> None:
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError("no EOF before the deadline")
        data = sock.recv(RECV)
        if not data:
            return
        sink(data)


def recv_all(sock: socket.socket, timeout: float = 30.0) -> bytes:
    """Everything a connected socket receives until EOF."""
    sock.settimeout(timeout)
    got = bytearray()
    _read_to_eof(sock, time.monotonic() + timeout, got.extend)
    return bytes(got)


def _roundtrip(sock: socket.socket, data: bytes, timeout: float) -> bytes:
    # Send from a second thread: with one thread, a large payload fills both
    # directions' buffers and the two ends wait on each other for ever.
    deadline = time.monotonic() + timeout
    errors: list[BaseException] = []

    def send() -> None:
        try:
            view = memoryview(data)
            for off in range(0, len(view), SEND_CHUNK):
                sock.sendall(view[off : off + SEND_CHUNK])
            sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            errors.append(e)

    sender = threading.Thread(target=send, name="echo-sender", daemon=True)
    sender.start()
    received = bytearray()
    try:
        _read_to_eof(sock, deadline, received.extend)
    except BaseException:
        # wake the sender if it is blocked in sendall, so join() returns
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        raise
    finally:
        sender.join(max(0.0, deadline - time.monotonic()) + 1.0)
    if errors:
        raise errors[0]
    return bytes(received)


def echo_roundtrip(host: str, port: int, data: bytes, timeout: float = 30.0) -> bytes:
    """Send data to an echo service, half-close, return all received until EOF."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        return _roundtrip(sock, data, timeout)


def echo_roundtrip_unix(path: str | Path, data: bytes, timeout: float = 30.0) -> bytes:
    """echo_roundtrip over a unix socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        return _roundtrip(sock, data, timeout)


def echo_many(host: str, port: int, n: int, timeout: float = 30.0) -> int:
    """Hold n echo connections open at once; return how many echoed correctly.

    All n are connected before any is read, so the server really has n
    concurrent connections (needs RLIMIT_NOFILE > n here and there).
    """
    socks: list[socket.socket] = []
    ok = 0
    try:
        for _ in range(n):
            socks.append(socket.create_connection((host, port), timeout=timeout))
        for i, s in enumerate(socks):
            s.sendall(b"%08d" % i)
            s.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + timeout
        for i, s in enumerate(socks):
            got = bytearray()
            _read_to_eof(s, deadline, got.extend)
            ok += got == b"%08d" % i
    finally:
        for s in socks:
            s.close()
    return ok


def echo_at_once(
    socks: Sequence[socket.socket], payloads: Sequence[bytes], timeout: float = 60.0
) -> list[bytes]:
    """Send payloads[i] on socks[i] (connected to echo services), half-close,
    and return what each received until EOF, driving all of them at once.

    One thread and an epoll selector move every connection, so a thousand
    are really in flight together without a thousand threads here measuring
    this process's scheduler rather than the forward.  A connection that
    fails keeps what it had received; the caller compares.
    """
    received = [bytearray() for _ in socks]
    sent = [0] * len(socks)
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        for i, sock in enumerate(socks):
            sock.setblocking(False)
            if payloads[i]:
                sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, i)
            else:
                sock.shutdown(socket.SHUT_WR)
                sel.register(sock, selectors.EVENT_READ, i)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"{len(sel.get_map())} of {len(socks)} echoes unfinished"
                )
            for key, events in sel.select(min(left, 1.0)):
                sock, i = key.fileobj, key.data
                assert isinstance(sock, socket.socket)
                try:
                    if events & selectors.EVENT_WRITE:
                        view = memoryview(payloads[i])[sent[i] : sent[i] + SEND_CHUNK]
                        sent[i] += sock.send(view)
                        if sent[i] == len(payloads[i]):
                            sock.shutdown(socket.SHUT_WR)
                            sel.modify(sock, selectors.EVENT_READ, i)
                    if events & selectors.EVENT_READ:
                        data = sock.recv(RECV)
                        if not data:
                            sel.unregister(sock)
                        received[i] += data
                except BlockingIOError:
                    continue
                except OSError:
                    sel.unregister(sock)
    return [bytes(r) for r in received]


# The /proc/net/tcp state of a listening socket, which is no connection
# (TIME_WAIT ones belong to no process: the inode filter drops them).
_TCP_LISTEN = "0A"


def _tcp_rows(pid: int) -> list[list[str]]:
    rows = []
    for table in ("tcp", "tcp6"):
        text = Path(f"/proc/{pid}/net/{table}").read_text()
        rows += [line.split() for line in text.splitlines()[1:]]
    return rows


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1], 16)


def tcp_connections(pids: Iterable[int], port: int) -> int:
    """TCP connections that the processes ``pids`` hold with ``port`` at
    either end (a half-closed one counts; listening sockets do not).

    Read from /proc in the processes' own network namespace, so it sees an
    sshd's or a target's side of a connection inside the rig's namespace.
    """
    pids = list(pids)
    mine = set().union(*(procs._socket_inodes(pid) for pid in pids))
    for pid in pids:  # they share a namespace: the first one still there
        try:
            rows = _tcp_rows(pid)
        except OSError:
            continue
        return sum(
            f[3] != _TCP_LISTEN
            and int(f[9]) in mine
            and port in (_port(f[1]), _port(f[2]))
            for f in rows
        )
    return 0


def sink_upload(
    host: str,
    port: int,
    payload: int | bytes | Iterable[bytes],
    timeout: float = 60.0,
) -> tuple[int, str]:
    """Upload to the sink; returns its reply (count, sha256 hex).

    payload: a byte count (sends data.pattern of that size), bytes, or chunks.
    """
    pieces: Iterable[bytes]
    if isinstance(payload, int):
        pieces = chunks(payload)
    elif isinstance(payload, (bytes, bytearray, memoryview)):
        pieces = [bytes(payload)]
    else:
        pieces = payload
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        for piece in pieces:
            sock.sendall(piece)
        sock.shutdown(socket.SHUT_WR)
        reply = bytearray()
        _read_to_eof(sock, deadline, reply.extend)
    try:
        count, digest = reply.decode().split()
        return int(count), digest
    except ValueError:
        raise AssertionError(f"unexpected sink reply {bytes(reply)[:200]!r}") from None


def source_download(
    host: str, port: int, n: int, timeout: float = 60.0
) -> tuple[int, str]:
    """Ask the source for n bytes; returns (count received, sha256 hex of them)."""
    deadline = time.monotonic() + timeout
    h = hashlib.sha256()
    count = 0

    def take(data: bytes) -> None:
        nonlocal count
        count += len(data)
        h.update(data)

    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(f"{n}\n".encode())
        _read_to_eof(sock, deadline, take)
    return count, h.hexdigest()


def http_get(
    host: str, port: int, path: str = "/", timeout: float = 30.0
) -> tuple[int, bytes]:
    """GET path; returns (status, body)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def port_is_closed(host: str, port: int, timeout: float = 2.0) -> bool:
    """True if a connection to host:port is refused (a timeout is not "closed")."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "",
) -> T:
    """Poll until predicate returns something truthy and return it.

    Raises TimeoutError if it does not within timeout seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", "condition")
            raise TimeoutError(f"{what} not met within {timeout} s")
        time.sleep(interval)


class SocksRefused(ConnectionError):
    """The proxy answered a CONNECT with a failure; ``code`` is its reply code."""

    def __init__(self, code: int) -> None:
        super().__init__(f"SOCKS reply code {code:#x}")
        self.code = code


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        data = sock.recv(n - len(got))
        if not data:
            raise ConnectionError(f"proxy closed after {len(got)} of {n} reply bytes")
        got.extend(data)
    return bytes(got)


def socks_connect(
    proxy_host: str,
    proxy_port: int,
    host: str,
    port: int,
    *,
    version: str = "5",
    timeout: float = 30.0,
) -> socket.socket:
    """A socket connected through a SOCKS proxy ("5", "4" or "4a") to host:port.

    Written from RFC 1928 and the SOCKS4/4a texts, independently of
    nbtunnel's parser, so the two check each other.  Raises SocksRefused
    with the proxy's reply code when it refuses.
    """
    sock = socket.create_connection((proxy_host, proxy_port), timeout=timeout)
    try:
        if version == "5":
            sock.sendall(b"\x05\x01\x00")
            if _recv_exact(sock, 2) != b"\x05\x00":
                raise ConnectionError("the proxy refused the no-auth method")
            try:
                ip = ipaddress.ip_address(host)
                addr = (b"\x01" if ip.version == 4 else b"\x04") + ip.packed
            except ValueError:
                addr = b"\x03" + bytes([len(host)]) + host.encode()
            sock.sendall(b"\x05\x01\x00" + addr + struct.pack(">H", port))
            head = _recv_exact(sock, 4)
            if head[1] != 0:
                raise SocksRefused(head[1])
            size = {1: 4, 4: 16}.get(head[3])
            _recv_exact(sock, (size or _recv_exact(sock, 1)[0]) + 2)
        else:
            if version == "4a":
                ip4, name = b"\x00\x00\x00\x01", host.encode() + b"\x00"
            else:
                ip4, name = ipaddress.IPv4Address(host).packed, b""
            sock.sendall(b"\x04\x01" + struct.pack(">H", port) + ip4 + b"me\x00" + name)
            reply = _recv_exact(sock, 8)
            if reply[1] != 0x5A:
                raise SocksRefused(reply[1])
        sock.settimeout(timeout)
        return sock
    except BaseException:
        sock.close()
        raise


def socks_echo(
    proxy_port: int,
    host: str,
    port: int,
    data: bytes,
    *,
    version: str = "5",
    proxy_host: str = "127.0.0.1",
    timeout: float = 30.0,
) -> bytes:
    """echo_roundtrip through a SOCKS proxy."""
    with socks_connect(
        proxy_host, proxy_port, host, port, version=version, timeout=timeout
    ) as sock:
        return _roundtrip(sock, data, timeout)


_ROOT = Path(__file__).resolve().parents[2]


def on_server(
    server: SshServer, *args: str | int, timeout: float = 60.0
) -> dict[str, object]:
    """Run ``python -m tests.rig.probe ARGS`` where the SSH server runs; its JSON reply.

    The probe is a client on the server's side of the tunnel: what it
    reaches of this machine, it reaches through the SSH connection.
    """
    argv = [
        "env",
        f"PYTHONPATH={_ROOT}",
        sys.executable,
        "-m",
        "tests.rig.probe",
        *map(str, args),
    ]
    result = server.exec_in_ns(argv, check=False, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"probe {args} failed: {result.stderr[-2000:]}")
    reply: dict[str, object] = json.loads(result.stdout)
    return reply


class Person:
    """A prompt function answering from a script, remembering what was asked
    (``prompt=`` of nbtunnel.open)."""

    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, bool]] = []

    def __call__(self, text: str, secret: bool) -> str | None:
        self.asked.append((text, secret))
        return self.answers.pop(0) if self.answers else None


def echoes(tunnel: Any, data: bytes) -> bool:
    """Whether ``data`` comes back through the tunnel's first forward (an -L
    to an echo target)."""
    port = tunnel.forwards[0].listen_port
    return echo_roundtrip("127.0.0.1", port, data, 10) == data


def accepted_logins(server: SshServer) -> list[str]:
    """sshd's "Accepted ..." log lines of late."""
    return [x for x in server.log_tail(400).splitlines() if "Accepted " in x]


def sessions_gone(server: SshServer, timeout: float = 5.0) -> bool:
    """Whether every SSH session on the server ends within ``timeout``."""
    return wait_until(lambda: not server.session_pids(), timeout)


def tally(port: int) -> dict[str, Any]:
    """The rig's tally target's counts (tests/rig/targets.py), asked through
    the forwarder on ``port``."""
    with socket.create_connection(("127.0.0.1", port), 10) as sock:
        sock.sendall(b"TALLY?\n")
        sock.shutdown(socket.SHUT_WR)
        report: dict[str, Any] = json.loads(recv_all(sock, 30))
    return report
