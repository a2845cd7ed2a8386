"""sshtunnel or asyncssh as a forwarder process for benchmarks/compare.py.

    python -m benchmarks.pyforward CONFIG_JSON

CONFIG_JSON: {"system": "sshtunnel" | "asyncssh", "host", "port", "user",
"key", "known_hosts", "local": [[name, target_host, target_port], ...],
"remote": [[name, server_port, here_host, here_port], ...], "echo": name}.

Opens the forwards as a library user would (in this process, the library's
own threads or event loop), then prints one JSON line: the local ports, and
the milliseconds from the library call to the first byte echoed through the
"echo" forward.  Then it reads commands on stdin: ``busy`` spins the main
thread in pure Python (a computing notebook cell in the process that opened
the tunnel) until ``idle``; end of input closes everything and exits.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

Closer = Callable[[], None]


def first_echo(port: int, deadline: float = 30.0) -> None:
    """One byte through the forward and back (retrying while it is not listening)."""
    end = time.monotonic() + deadline
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(b"!")
                if sock.recv(1) == b"!":
                    return
        except OSError:
            pass
        if time.monotonic() > end:
            raise TimeoutError("no echo through the forward")
        time.sleep(0.002)


def open_sshtunnel(cfg: dict[str, Any]) -> tuple[dict[str, int], Closer]:
    from sshtunnel import SSHTunnelForwarder

    if cfg["remote"]:
        raise SystemExit("sshtunnel has no remote (-R) forwards")
    fwd = SSHTunnelForwarder(
        (cfg["host"], cfg["port"]),
        ssh_username=cfg["user"],
        ssh_pkey=cfg["key"],
        ssh_config_file=None,
        allow_agent=False,
        host_pkey_directories=[],
        remote_bind_addresses=[(h, p) for _, h, p in cfg["local"]],
        local_bind_addresses=[("127.0.0.1", 0) for _ in cfg["local"]],
        set_keepalive=0,
    )
    fwd.start()
    ports = dict(
        zip((n for n, _, _ in cfg["local"]), fwd.local_bind_ports, strict=True)
    )
    return ports, fwd.stop


def open_asyncssh(cfg: dict[str, Any]) -> tuple[dict[str, int], Closer]:
    import asyncssh

    # The library's loop in a thread of its own, so that the main thread is
    # free to be busy as a notebook's would be.
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def setup() -> tuple[Any, dict[str, int]]:
        conn = await asyncssh.connect(
            cfg["host"],
            cfg["port"],
            username=cfg["user"],
            client_keys=[cfg["key"]],
            known_hosts=cfg["known_hosts"],
            agent_path=None,
            config=[],
        )
        ports: dict[str, int] = {}
        for name, host, port in cfg["local"]:
            listener = await conn.forward_local_port("127.0.0.1", 0, host, port)
            ports[name] = listener.get_port()
        for name, server_port, host, port in cfg["remote"]:
            await conn.forward_remote_port("127.0.0.1", server_port, host, port)
            ports[name] = server_port
        return conn, ports

    conn, ports = asyncio.run_coroutine_threadsafe(setup(), loop).result(60)

    def close() -> None:
        async def shut() -> None:
            conn.close()
            await conn.wait_closed()

        asyncio.run_coroutine_threadsafe(shut(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    return ports, close


def spin_until(stop: threading.Event) -> None:
    total = 0
    while not stop.is_set():
        for i in range(20_000):
            total += i * i % 7


def main() -> None:
    cfg = json.loads(sys.argv[1])
    opener = {"sshtunnel": open_sshtunnel, "asyncssh": open_asyncssh}[cfg["system"]]
    t0 = time.perf_counter()
    ports, close = opener(cfg)
    first_echo(ports[cfg["echo"]])
    first_ms = (time.perf_counter() - t0) * 1000
    print(json.dumps({"ports": ports, "first_byte_ms": first_ms}), flush=True)

    stop = threading.Event()
    commands: list[str] = []
    ready = threading.Condition()

    def read_commands() -> None:
        for line in sys.stdin:
            with ready:
                commands.append(line.strip())
                stop.set()  # ends a spin in progress
                ready.notify()
        with ready:
            commands.append("eof")
            stop.set()
            ready.notify()

    threading.Thread(target=read_commands, daemon=True).start()
    try:
        while True:
            with ready:
                while not commands:
                    ready.wait()
                command = commands.pop(0)
                if not commands:
                    stop.clear()
            if command == "eof":
                return
            if command == "busy":
                print("busy", flush=True)
                spin_until(stop)
    finally:
        close()


if __name__ == "__main__":
    main()
