"""A sink that is told the length: ``python -m benchmarks.lsink``.

Like the rig's sink (tests/rig/targets.py), but the client starts with
"<n>\\n" and the reply "<count> <sha256 hex>\\n" comes after n bytes, not at
end of file.  sshtunnel does not pass a half-close on (it closes the whole
channel), so through it the rig's sink's reply never comes back; with this
one every system uploads the same way.  Listens on 127.0.0.1, prints
{"port": N}, serves until its stdin ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import sys
import threading

RECV = 1024 * 1024


def serve_one(conn: socket.socket) -> None:
    with conn, contextlib.suppress(OSError, ValueError):
        head = b""
        while not head.endswith(b"\n"):
            data = conn.recv(1)
            if not data or len(head) > 32:
                return
            head += data
        left = int(head)
        h = hashlib.sha256()
        count = 0
        buf = bytearray(RECV)
        view = memoryview(buf)
        while left > 0:
            got = conn.recv_into(buf, min(left, RECV))
            if not got:
                break
            h.update(view[:got])
            count += got
            left -= got
        conn.sendall(f"{count} {h.hexdigest()}\n".encode())
        # Wait for the client to hang up: closing first could reset the reply.
        while conn.recv(RECV):
            pass


def accept_loop(srv: socket.socket) -> None:
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve_one, args=(conn,), daemon=True).start()


def main() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1024)
    threading.Thread(target=accept_loop, args=(srv,), daemon=True).start()
    print(json.dumps({"port": srv.getsockname()[1]}), flush=True)
    while sys.stdin.buffer.read(4096):
        pass


if __name__ == "__main__":
    main()
