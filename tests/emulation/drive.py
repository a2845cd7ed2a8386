"""What a user's notebook does, run under the emulation: ``python drive.py MODE CONFIG``.

Run by test_emulated.py with ``NBTUNNEL_EMULATE`` set, so this process and
the engine it starts (``Manager(engine="process")``) both run emulated.
Its clients are plain sockets written here, as a Mac or Windows user's
would be: tests.rig imports Linux-only modules and cannot run emulated
(only tests/rig/data.py is loaded, by path, for the deterministic payload).

Modes (CONFIG is JSON; every reply is one JSON line on stdout):

- ``facts``: what the emulation removed, as this process sees it.
- ``forwards``: opens the tunnel ``config["line"]`` (-L echo, -L sink,
  -L source, -D, -R sink, -R http), moves data through the -L and -D
  forwards with sha256 checks, prints ``{"facts", "local", "dynamic",
  "steal", "remote_ports", "engine_pid"}``, then waits for a line on stdin
  (the test pushes through the -R forwards from the server meanwhile) and
  prints the forwards' stats before closing.
- ``refuse``: opens each of ``config["lines"]`` in turn and prints, per
  line, whether it worked, was refused with an nbtunnel error (its
  message) or crashed (the traceback).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import socket
import struct
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("rigdata", ROOT / "tests/rig/data.py")
assert _spec is not None and _spec.loader is not None
data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(data)

MiB = 1024 * 1024
TIMEOUT = 30.0


def facts() -> dict[str, Any]:
    try:
        import termios  # noqa: F401

        has_termios = True
    except ImportError:
        has_termios = False
    return {
        "emulated": getattr(sys, "_nbtunnel_emulated", None),
        "TCP_QUICKACK": hasattr(socket, "TCP_QUICKACK"),
        "TCP_KEEPIDLE": hasattr(socket, "TCP_KEEPIDLE"),
        "AF_UNIX": hasattr(socket, "AF_UNIX"),
        "MSG_DONTWAIT": hasattr(socket, "MSG_DONTWAIT"),
        "termios": has_termios,
    }


def _read_to_eof(sock: socket.socket, sink: Any) -> None:
    while chunk := sock.recv(256 * 1024):
        sink(chunk)


def echo_sha(sock: socket.socket, n: int) -> dict[str, Any]:
    """Send data.pattern(n) from a thread, read the echo: both ways' sha256."""
    payload = data.pattern(n)
    errors: list[BaseException] = []

    def send() -> None:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            errors.append(exc)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    back = hashlib.sha256()
    count = 0

    def take(chunk: bytes) -> None:
        nonlocal count
        count += len(chunk)
        back.update(chunk)

    _read_to_eof(sock, take)
    sender.join(TIMEOUT)
    return {
        "sent": n,
        "received": count,
        "ok": not errors and back.hexdigest() == data.expected_sha256(n),
        "error": repr(errors[0]) if errors else None,
    }


def sink_sha(port: int, n: int) -> dict[str, Any]:
    """Upload to the sink; it replies with the count and sha256 it received."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        for piece in data.chunks(n):
            sock.sendall(piece)
        sock.shutdown(socket.SHUT_WR)
        reply = bytearray()
        _read_to_eof(sock, reply.extend)
    count, digest = reply.decode().split()
    return {
        "sent": n,
        "received": int(count),
        "ok": int(count) == n and digest == data.expected_sha256(n),
    }


def source_sha(sock: socket.socket, n: int) -> dict[str, Any]:
    """Ask the source for n bytes of the pattern; check them by sha256."""
    sock.sendall(f"{n}\n".encode())
    got = hashlib.sha256()
    count = 0

    def take(chunk: bytes) -> None:
        nonlocal count
        count += len(chunk)
        got.update(chunk)

    _read_to_eof(sock, take)
    return {
        "wanted": n,
        "received": count,
        "ok": count == n and got.hexdigest() == data.expected_sha256(n),
    }


def _exact(sock: socket.socket, n: int) -> bytes:
    got = b""
    while len(got) < n:
        chunk = sock.recv(n - len(got))
        if not chunk:
            raise ConnectionError("the proxy closed during its reply")
        got += chunk
    return got


def socks5(proxy_port: int, host: str, port: int) -> socket.socket:
    """A connection through the SOCKS5 proxy (RFC 1928, no auth, a domain name)."""
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=TIMEOUT)
    sock.sendall(b"\x05\x01\x00")
    if _exact(sock, 2) != b"\x05\x00":
        raise ConnectionError("the proxy refused the no-auth method")
    name = host.encode()
    sock.sendall(
        b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack(">H", port)
    )
    head = _exact(sock, 4)
    if head[1] != 0:
        raise ConnectionError(f"SOCKS reply code {head[1]:#x}")
    _exact(sock, {1: 4, 4: 16}.get(head[3], 0) + 2)
    return sock


def can_steal(port: int) -> bool:
    """Whether another socket may bind the listener's port (Windows'
    SO_REUSEADDR allows it; SO_EXCLUSIVEADDRUSE on the listener prevents it)."""
    with socket.socket() as thief:
        thief.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            thief.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _stats(forward: Any) -> dict[str, Any]:
    s = forward.stats
    return {
        "kind": forward.kind,
        "state": forward.state,
        "to_target": s.bytes_to_target,
        "from_target": s.bytes_from_target,
        "total": s.connections_total,
        "failed": s.connections_failed,
        "last_error": s.last_error,
        "note": forward.note,
    }


def _port(forward: Any) -> int:
    port = forward.listen_port
    assert isinstance(port, int), forward
    return port


def forwards(config: dict[str, Any]) -> None:
    from nbtunnel import Manager

    n = config["bytes"]
    manager = Manager(engine="process")
    try:
        with manager.open(config["line"]) as tunnel:
            echo, sink, source, dynamic, *remote = tunnel.forwards
            with socket.create_connection(
                ("127.0.0.1", _port(echo)), timeout=TIMEOUT
            ) as sock:
                local = {"echo": echo_sha(sock, n)}
            local["sink"] = sink_sha(_port(sink), n)
            with socket.create_connection(
                ("127.0.0.1", _port(source)), timeout=TIMEOUT
            ) as sock:
                local["source"] = source_sha(sock, n)
            host = config["target_host"]
            with socks5(_port(dynamic), host, config["echo"]) as sock:
                through_socks = {"echo": echo_sha(sock, n)}
            with socks5(_port(dynamic), host, config["source"]) as sock:
                through_socks["source"] = source_sha(sock, n)
            report = {
                "facts": facts(),
                "local": local,
                "dynamic": through_socks,
                "steal": {
                    "local": can_steal(_port(echo)),
                    "dynamic": can_steal(_port(dynamic)),
                },
                "remote_ports": [f.listen_port for f in remote],
                "engine_pid": manager.engine_pid,
            }
            print(json.dumps(report), flush=True)
            sys.stdin.readline()  # the test used the -R forwards from the server
            print(
                json.dumps({"stats": [_stats(f) for f in tunnel.forwards]}), flush=True
            )
    finally:
        manager.close()


def refuse(config: dict[str, Any]) -> None:
    from nbtunnel import Manager, TunnelError

    manager = Manager(engine="process")
    results: list[dict[str, Any]] = []
    try:
        for line in config["lines"]:
            try:
                with manager.open(line) as tunnel:
                    outcome: dict[str, Any] = {"outcome": "works"}
                    first = tunnel.forwards[0]
                    if config.get("echo_through_first") and first.listen_port:
                        with socket.create_connection(
                            ("127.0.0.1", first.listen_port), timeout=TIMEOUT
                        ) as sock:
                            outcome["echo"] = echo_sha(sock, 64 * 1024)
            except TunnelError as exc:
                outcome = {"outcome": "refused", "type": type(exc).__name__}
                outcome["message"] = str(exc)
            except Exception:  # noqa: BLE001 - an internal error is the finding
                outcome = {"outcome": "crashed", "message": traceback.format_exc()}
            results.append({"line": line, **outcome})
        results.append({"facts": facts(), "engine_pid": manager.engine_pid})
    finally:
        with contextlib.suppress(Exception):
            manager.close()
    print(json.dumps(results), flush=True)


def main() -> None:
    mode = sys.argv[1]
    config = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    if mode == "facts":
        print(json.dumps(facts()), flush=True)
    elif mode == "forwards":
        forwards(config)
    elif mode == "refuse":
        refuse(config)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
