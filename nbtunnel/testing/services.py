"""A small web service on loopback for the embedded server to reach (the demo's target)."""

from __future__ import annotations

import hashlib
import http.server
import random
import sys
import threading
from collections.abc import Iterator
from types import TracebackType

CHUNK = 1 << 20
# Bytes no bug could produce by accident (a shifted or repeated block shows
# in the checksum), yet the same on every run.
SEED = 20261121


def payload(size: int) -> Iterator[bytes]:
    """The ``/bytes/SIZE`` body, in chunks: the same bytes every time."""
    rng = random.Random(SEED)
    left = size
    while left > 0:
        chunk = rng.randbytes(CHUNK)[:left]
        left -= len(chunk)
        yield chunk


def payload_sha256(size: int) -> str:
    """What the ``/bytes/SIZE`` body hashes to, computed here, not fetched."""
    digest = hashlib.sha256()
    for chunk in payload(size):
        digest.update(chunk)
    return digest.hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/":
            body = (
                f"<!doctype html><title>{self.server.title}</title>"
                f"<h1>Hello from {self.server.title}</h1><p>{self.server.text}</p>\n"
            ).encode()
            self._head(200, "text/html; charset=utf-8", len(body))
            self.wfile.write(body)
            return
        if path.startswith("/bytes/") and path[7:].isdigit():
            size = int(path[7:])
            self._head(200, "application/octet-stream", size)
            for chunk in payload(size):
                self.wfile.write(chunk)
            return
        body = b"not found: try / or /bytes/SIZE\n"
        self._head(404, "text/plain", len(body))
        self.wfile.write(body)

    def _head(self, status: int, kind: str, length: int) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # a demo's output is its own; requests are not news


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True
    title = ""
    text = ""

    def handle_error(self, request: object, client_address: object) -> None:
        # A client gone mid-answer (the demo stopped by a signal, a browser
        # closed) is no fault of the service: socketserver would print a
        # traceback into the demo's output.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class PrivateService:
    """An HTTP service on 127.0.0.1: ``/`` says hello, ``/bytes/SIZE`` sends
    SIZE bytes of :func:`payload` (check them with :func:`payload_sha256`)."""

    def __init__(self, title: str = "the private service", text: str = "") -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.title = title
        self._server.text = text or "Only the SSH server is meant to reach this page."
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="nbtunnel-testing-http",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        """Stop serving and close the port; safe to call more than once."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> PrivateService:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
