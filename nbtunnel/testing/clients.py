"""The demo's clients: an HTTP GET over a plain socket, directly or through SOCKS5."""

from __future__ import annotations

import hashlib
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

READ = 1 << 20
TIMEOUT = 30.0


@dataclass(frozen=True)
class Response:
    status: int
    size: int
    sha256: str
    head: bytes  # the first bytes of the body, for showing


def get(
    host: str,
    port: int,
    path: str = "/",
    *,
    socks: tuple[str, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Response:
    """GET ``http://host:port/path`` (through the SOCKS5 proxy ``socks``,
    which then resolves ``host``), hashing the body as it arrives.
    ``progress(received, total)`` is called after every read."""
    if socks is None:
        sock = socket.create_connection((host, port), timeout=TIMEOUT)
    else:
        sock = socket.create_connection(socks, timeout=TIMEOUT)
    with sock:
        if socks is not None:
            _socks5_connect(sock, host, port)
        request = f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n"
        sock.sendall(request.encode())
        received = b""
        while b"\r\n\r\n" not in received:
            data = sock.recv(READ)
            if not data:
                raise ConnectionError(f"{host}:{port} closed before its reply")
            received += data
        header, body = received.split(b"\r\n\r\n", 1)
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        total = next(
            (
                int(line.split(":", 1)[1])
                for line in lines[1:]
                if line.lower().startswith("content-length:")
            ),
            0,
        )
        digest = hashlib.sha256(body)
        size, head = len(body), body[:200]
        while True:
            if progress is not None:
                progress(size, total)
            data = sock.recv(READ)
            if not data:
                break
            digest.update(data)
            size += len(data)
            if len(head) < 200:
                head = (head + data)[:200]
    return Response(status, size, digest.hexdigest(), head)


def _socks5_connect(sock: socket.socket, host: str, port: int) -> None:
    """RFC 1928 CONNECT by name (the proxy's side resolves it), no auth."""
    sock.sendall(b"\x05\x01\x00")
    if _exactly(sock, 2) != b"\x05\x00":
        raise ConnectionError("the SOCKS proxy refused a login-free session")
    name = host.encode("idna")
    sock.sendall(
        b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack("!H", port)
    )
    version, reply, _, kind = _exactly(sock, 4)
    if version != 5 or reply != 0:
        raise ConnectionError(
            f"the SOCKS proxy could not reach {host}:{port} (reply {reply})"
        )
    length = {1: 4, 4: 16}.get(kind) or _exactly(sock, 1)[0]
    _exactly(sock, length + 2)  # the bound address and port, not needed


def _exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = sock.recv(n - len(data))
        if not more:
            raise ConnectionError("the SOCKS proxy closed the connection")
        data += more
    return data
