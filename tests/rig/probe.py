"""A client run on the SSH server's side: ``python -m tests.rig.probe COMMAND ARGS``.

Prints one JSON object.  Tests run it through clients.on_server() to use a
remote forward from where its users would: the server.

    http HOST PORT PATH            {"status", "length", "sha256"}
    push HOST PORT NBYTES          the sink's reply {"count", "sha256"}
    echo HOST PORT NBYTES          {"ok"}: the pattern came back unchanged
    echo-unix PATH NBYTES          {"ok"}
    socks-echo PROXYPORT HOST PORT NBYTES VERSION [PROXYHOST]
                                   {"ok"}, {"refused": code} or {"error"};
                                   the proxy on 127.0.0.1 unless PROXYHOST
    closed HOST PORT               {"closed"}: a connection is refused
    hung-up HOST PORT              {"hung_up"}: accepted, then closed with no byte
    closed-unix PATH               {"closed"}
    free-port                      {"port"}: one nothing listens on there
"""

from __future__ import annotations

import hashlib
import json
import socket
import sys

from . import clients
from .data import pattern


def _closed_unix(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return True
        return False


def main(argv: list[str]) -> dict[str, object]:
    command, *args = argv
    if command == "http":
        status, body = clients.http_get(args[0], int(args[1]), args[2])
        digest = hashlib.sha256(body).hexdigest()
        return {"status": status, "length": len(body), "sha256": digest}
    if command == "push":
        count, digest = clients.sink_upload(args[0], int(args[1]), int(args[2]))
        return {"count": count, "sha256": digest}
    if command == "echo":
        data = pattern(int(args[2]))
        return {"ok": clients.echo_roundtrip(args[0], int(args[1]), data) == data}
    if command == "echo-unix":
        data = pattern(int(args[1]))
        return {"ok": clients.echo_roundtrip_unix(args[0], data) == data}
    if command == "socks-echo":
        data = pattern(int(args[3]))
        try:
            back = clients.socks_echo(
                int(args[0]),
                args[1],
                int(args[2]),
                data,
                version=args[4],
                proxy_host=args[5] if len(args) > 5 else "127.0.0.1",
            )
        except clients.SocksRefused as exc:
            return {"refused": exc.code}
        except OSError as exc:  # no proxy there, or something else answering
            return {"error": repr(exc)}
        return {"ok": back == data}
    if command == "hung-up":
        # Reads only: a peer that closes at once may reset a writer (or
        # reset the connection before connect() has returned).
        try:
            with socket.create_connection((args[0], int(args[1])), 30) as sock:
                got = clients.recv_all(sock, 30)
        except ConnectionResetError:
            got = b""
        return {"hung_up": got == b""}
    if command == "closed":
        return {"closed": clients.port_is_closed(args[0], int(args[1]))}
    if command == "closed-unix":
        return {"closed": _closed_unix(args[0])}
    if command == "free-port":
        return {"port": clients.free_port()}
    raise SystemExit(f"unknown probe command {command!r}")


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
