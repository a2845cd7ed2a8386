"""Target services that forwards lead to, and the launcher for their process.

Run as ``python -m tests.rig.targets --unix PATH`` or by path
(tests.rig.launcher.start_targets does that, inside the rig's namespace in
netns mode). It listens on 127.0.0.1 (plus ::1
for echo6), each service on its own ephemeral port, and prints one JSON line
with the ports once everything listens:

- echo:   echoes; on the client's EOF it flushes, shuts down its write side
          (so a half-close travels back through a tunnel), then closes
- sink:   reads to EOF, replies "<count> <sha256 hex>\\n", closes
- source: reads "<n>\\n", sends data.pattern(n), closes
- http:   HTTP/1.1; GET /bytes/<n> -> data.pattern(n), GET / -> "nbtunnel rig"
- tally:  reads to EOF and replies as the sink does, and counts: every
          connection it accepted, and the sha256 of every one it read to
          EOF; a connection that sends just "TALLY?\n" gets those counts as
          JSON instead (and is not counted): how many connections a
          forwarder opened, and whose bytes arrived whole
- unix_echo: echo on a unix socket
- refused_port: bound once and closed, so nothing listens there

It exits when its stdin reaches EOF, i.e. when the process that started it
is gone, even if that process was SIGKILLed and could not clean up.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.server
import json
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run by path: make `tests.rig` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.rig.data import chunks

BACKLOG = 4096
RECV = 256 * 1024


def _serve_echo(conn: socket.socket) -> None:
    with conn:
        while True:
            data = conn.recv(RECV)
            if not data:
                break
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)


def _serve_sink(conn: socket.socket) -> None:
    with conn:
        h = hashlib.sha256()
        count = 0
        while True:
            data = conn.recv(RECV)
            if not data:
                break
            count += len(data)
            h.update(data)
        conn.sendall(f"{count} {h.hexdigest()}\n".encode())
        conn.shutdown(socket.SHUT_WR)


def _serve_source(conn: socket.socket) -> None:
    with conn:
        line = b""
        while not line.endswith(b"\n"):
            data = conn.recv(1)
            if not data:
                return
            line += data
            if len(line) > 32:
                return
        for piece in chunks(int(line)):
            conn.sendall(piece)
        conn.shutdown(socket.SHUT_WR)


class _Tally:
    """What the tally service saw; see the module's docstring."""

    QUERY = b"TALLY?\n"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted = 0
        self.queries = 0
        self.errors = 0
        self.digests: dict[str, int] = {}

    def serve(self, conn: socket.socket) -> None:
        with self.lock:
            self.accepted += 1
        with conn:
            h = hashlib.sha256()
            count = 0
            head = b""
            try:
                while data := conn.recv(RECV):
                    count += len(data)
                    h.update(data)
                    if len(head) < len(self.QUERY):
                        head += data[: len(self.QUERY)]
            except OSError:
                with self.lock:
                    self.errors += 1
                raise
            if count == len(self.QUERY) and head == self.QUERY:
                with self.lock:
                    self.queries += 1
                    report = {
                        "accepted": self.accepted - self.queries,
                        "errors": self.errors,
                        "digests": dict(self.digests),
                    }
                conn.sendall(json.dumps(report).encode())
            else:
                digest = h.hexdigest()
                with self.lock:
                    self.digests[digest] = self.digests.get(digest, 0) + 1
                conn.sendall(f"{count} {digest}\n".encode())
            conn.shutdown(socket.SHUT_WR)


def _guard(handler: Callable[[socket.socket], None]) -> Callable[[socket.socket], None]:
    def run(conn: socket.socket) -> None:
        # A client that resets or vanishes mid-transfer is normal in tunnel
        # tests and must not spam stderr or end the service.
        with contextlib.suppress(OSError, ValueError):
            handler(conn)

    return run


def _accept_loop(srv: socket.socket, handler: Callable[[socket.socket], None]) -> None:
    guarded = _guard(handler)
    while True:
        try:
            conn, _ = srv.accept()
        except OSError:
            time.sleep(0.01)  # e.g. EMFILE: back off instead of spinning
            continue
        threading.Thread(target=guarded, args=(conn,), daemon=True).start()


def _listen(family: socket.AddressFamily, addr: str | tuple[str, int]) -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM)
    if family != socket.AF_UNIX:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr)
    s.listen(BACKLOG)
    return s


class _Http(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        m = re.fullmatch(r"/bytes/(\d+)", self.path)
        if m:
            n = int(m.group(1))
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            for piece in chunks(n):
                self.wfile.write(piece)
        elif self.path == "/":
            body = b"nbtunnel rig\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would drown the log in load tests

    def handle(self) -> None:
        with contextlib.suppress(OSError):
            super().handle()


class _HttpServer(http.server.ThreadingHTTPServer):
    request_queue_size = BACKLOG
    daemon_threads = True


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def serve(unix_path: Path) -> None:
    """Start every service, print the JSON line, serve until stdin closes."""
    import resource  # POSIX-only: imported here so that the rig loads everywhere

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # 1000+ connections = 1000+ threads; the default 8 MiB stacks are wasteful
    threading.stack_size(512 * 1024)

    ports: dict[str, object] = {}
    listeners: list[tuple[str, socket.socket, Callable[[socket.socket], None]]] = [
        ("echo", _listen(socket.AF_INET, ("127.0.0.1", 0)), _serve_echo),
        ("sink", _listen(socket.AF_INET, ("127.0.0.1", 0)), _serve_sink),
        ("source", _listen(socket.AF_INET, ("127.0.0.1", 0)), _serve_source),
        ("tally", _listen(socket.AF_INET, ("127.0.0.1", 0)), _Tally().serve),
    ]
    if _has_ipv6_loopback():
        listeners.append(("echo6", _listen(socket.AF_INET6, ("::1", 0)), _serve_echo))
    with contextlib.suppress(FileNotFoundError):
        unix_path.unlink()
    listeners.append(
        ("unix_echo", _listen(socket.AF_UNIX, str(unix_path)), _serve_echo)
    )
    for name, srv, handler in listeners:
        if srv.family != socket.AF_UNIX:
            ports[name] = srv.getsockname()[1]
        threading.Thread(target=_accept_loop, args=(srv, handler), daemon=True).start()
    ports.setdefault("echo6", None)
    ports["unix_echo"] = str(unix_path)

    httpd = _HttpServer(("127.0.0.1", 0), _Http)
    ports["http"] = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        ports["refused_port"] = s.getsockname()[1]
    ports["pid"] = os.getpid()

    sys.stdout.write(json.dumps(ports) + "\n")
    sys.stdout.flush()
    # Parent gone (or done with us) = stdin EOF: exit without waiting for anyone.
    while sys.stdin.buffer.read(4096):
        pass
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--unix", type=Path, required=True, help="unix echo socket path")
    ap.add_argument("--dir", type=Path, help="rig dir (only to tag the command line)")
    serve(ap.parse_args(argv).unix)


if __name__ == "__main__":
    main()
