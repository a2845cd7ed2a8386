"""The client side of benchmarks/compare.py, run as a process of its own.

    python -m benchmarks.workload upload HOST PORT NBYTES TIMEOUT
    python -m benchmarks.workload download HOST PORT NBYTES TIMEOUT
    python -m benchmarks.workload rtt HOST PORT COUNT SIZE TIMEOUT [SECONDS]
    python -m benchmarks.workload conc HOST PORT N SIZE TIMEOUT
    python -m benchmarks.workload burst HOST PORT SECONDS RATE SEED
    python -m benchmarks.workload bystander HOST PORT SECONDS INTERVAL

Each prints one JSON object.  A process apart from the forwarder and from
the caller that opened it, so that neither the client's CPU nor a busy
caller's loop is mixed into what is measured; and, for -R, it runs where the
server runs (compare.py wraps it in the rig's namespace).  Uploads go to
benchmarks/lsink.py, downloads come from the rig's source (which sends
data.pattern(n)), round trips go to the rig's echo.
"""

from __future__ import annotations

import errno
import hashlib
import json
import selectors
import socket
import statistics
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.rig.data import BLOCK, block

MiB = 1024 * 1024
# Client syscalls of 1 MiB: the client must never be what limits a tunnel
# (the direct path reaches 1.5-2 GB/s this way; docs/performance-notes.md).
PIECE = MiB
RECV = MiB


def _pieces(n: int) -> Iterator[bytes]:
    """data.pattern(n) in PIECE-sized bytes objects (same stream as the sink hashes)."""
    per = PIECE // BLOCK
    k = 0
    while n > 0:
        piece = b"".join(block(k + i) for i in range(per))
        k += per
        if n < len(piece):
            piece = piece[:n]
        yield piece
        n -= len(piece)


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def upload(host: str, port: int, n: int, timeout: float) -> dict[str, object]:
    """n bytes to benchmarks/lsink.py, which replies with their count and sha256."""
    t0 = time.perf_counter()
    with _connect(host, port, timeout) as sock:
        sock.sendall(f"{n}\n".encode())
        for piece in _pieces(n):
            sock.sendall(piece)
        reply = bytearray()
        while not reply.endswith(b"\n"):
            data = sock.recv(4096)
            if not data:
                raise ConnectionError(f"the sink hung up after {bytes(reply)!r}")
            reply += data
    seconds = time.perf_counter() - t0
    count, digest = reply.decode().split()
    return {"seconds": seconds, "count": int(count), "sha256": digest}


def download(host: str, port: int, n: int, timeout: float) -> dict[str, object]:
    h = hashlib.sha256()
    buf = bytearray(RECV)
    view = memoryview(buf)
    count = 0
    t0 = time.perf_counter()
    with _connect(host, port, timeout) as sock:
        sock.sendall(f"{n}\n".encode())
        while got := sock.recv_into(buf):
            h.update(view[:got])
            count += got
    return {
        "seconds": time.perf_counter() - t0,
        "count": count,
        "sha256": h.hexdigest(),
    }


def rtt(
    host: str, port: int, count: int, size: int, timeout: float, most: float
) -> dict[str, object]:
    """``count`` sequential round trips of ``size`` bytes, each one checked,
    or as many as fit in ``most`` seconds (a forwarder starved by a busy
    caller takes tens of ms each)."""
    times: list[float] = []
    bad = 0
    stop = time.perf_counter() + most
    with _connect(host, port, timeout) as sock:
        for i in range(count):
            if time.perf_counter() > stop:
                break
            msg = (b"%08d" % i) * (size // 8) + b"x" * (size % 8)
            t0 = time.perf_counter_ns()
            sock.sendall(msg)
            got = b""
            while len(got) < size:
                data = sock.recv(size - len(got))
                if not data:
                    raise ConnectionError("echo closed mid-way")
                got += data
            times.append((time.perf_counter_ns() - t0) / 1000)
            bad += got != msg
    times.sort()
    return {
        "median_us": statistics.median(times),
        "p99_us": times[min(len(times) - 1, int(len(times) * 0.99))],
        "count": len(times),
        "bad": bad,
    }


class _Conn:
    """One echo connection of conc(): what it sends, and how far it has got."""

    __slots__ = ("done", "expected", "received", "sent", "sock")

    def __init__(self, sock: socket.socket, expected: memoryview) -> None:
        self.sock = sock
        self.expected = expected
        self.sent = 0
        self.received = 0
        self.done = False


def conc(host: str, port: int, n: int, size: int, timeout: float) -> dict[str, object]:
    """n connections opened at once, each echoing its own ``size`` bytes.

    A connection succeeds once all its bytes came back (no half-close: some
    forwarders do not pass one on).  One thread and epoll (no select(): n
    may pass FD_SETSIZE).  Each connection's bytes are a different rotation
    of one random block, checked as they arrive, so a mixed-up or truncated
    stream fails its connection.
    """
    base = b"".join(block(k) for k in range(-(-size // BLOCK)))[:size]
    doubled = memoryview(base + base)
    errors: dict[str, int] = {}
    ok = 0

    def fail(c: _Conn, why: str) -> None:
        errors[why] = errors.get(why, 0) + 1
        c.done = True
        sel.unregister(c.sock)
        c.sock.close()

    sel = selectors.DefaultSelector()
    conns: list[_Conn] = []
    t0 = time.perf_counter()
    for i in range(n):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        err = sock.connect_ex((host, port))
        c = _Conn(sock, doubled[(i * 7919) % size :][:size])
        conns.append(c)
        if err not in (0, errno.EINPROGRESS):
            errors[errno.errorcode.get(err, str(err))] = (
                errors.get(errno.errorcode.get(err, str(err)), 0) + 1
            )
            c.done = True
            sock.close()
            continue
        sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
    left = sum(not c.done for c in conns)
    deadline = t0 + timeout
    while left and time.perf_counter() < deadline:
        for key, events in sel.select(timeout=1.0):
            c = key.data
            try:
                if events & selectors.EVENT_WRITE and c.sent < size:
                    c.sent += c.sock.send(c.expected[c.sent : c.sent + 256 * 1024])
                    if c.sent == size:
                        sel.modify(c.sock, selectors.EVENT_READ, c)
                if events & selectors.EVENT_READ:
                    data = c.sock.recv(RECV)
                    if not data:
                        fail(c, "short")
                        left -= 1
                        continue
                    end = c.received + len(data)
                    if end > size or data != c.expected[c.received : end]:
                        fail(c, "corrupt")
                        left -= 1
                        continue
                    c.received = end
                    if end == size:
                        ok += 1
                        c.done = True
                        sel.unregister(c.sock)
                        c.sock.close()
                        left -= 1
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                fail(c, type(exc).__name__)
                left -= 1
    for c in conns:
        if not c.done:
            errors["timeout"] = errors.get("timeout", 0) + 1
            c.sock.close()
    sel.close()
    return {"ok": ok, "n": n, "seconds": time.perf_counter() - t0, "errors": errors}


# The burst's clients, in turn: each sends a little and goes without reading
# the reply: with a reset, after a half-close, or with a plain close.
BURST_KINDS = ("reset", "half", "close")


def burst_payload(seed: str, i: int) -> bytes:
    """A short payload of its own for connection ``i`` (64-1000 bytes)."""
    head = f"{seed}:{i}:".encode()
    return (head * 1000)[: 64 + (i * 37) % 937]


def burst(
    host: str, port: int, seconds: float, rate: float, seed: str
) -> dict[str, object]:
    """``rate`` short connections a second for ``seconds``, each sending a
    little and closing without reading (BURST_KINDS in turn).

    Returns what was made, the connects that failed, and the sha256 of
    every payload that must arrive (those of the clients that did not
    reset), for the target to be checked against.
    """
    made = {kind: 0 for kind in BURST_KINDS}
    failed = 0
    digests: list[str] = []
    linger = struct.pack("ii", 1, 0)
    t0 = time.perf_counter()
    i = 0
    while (now := time.perf_counter()) < t0 + seconds:
        ahead = t0 + i / rate - now
        if ahead > 0:
            time.sleep(ahead)
        kind = BURST_KINDS[i % len(BURST_KINDS)]
        payload = burst_payload(seed, i)
        i += 1
        try:
            sock = socket.create_connection((host, port), timeout=5)
        except OSError:
            failed += 1
            continue
        try:
            sock.sendall(payload)
            if kind == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            elif kind == "half":
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            failed += 1
            sock.close()
            continue
        sock.close()
        made[kind] += 1
        if kind != "reset":
            digests.append(hashlib.sha256(payload).hexdigest())
    return {
        "made": made,
        "failed": failed,
        "seconds": time.perf_counter() - t0,
        "digests": digests,
    }


def churn(host: str, port: int, seconds: float) -> dict[str, object]:
    """New connections one after another, as fast as they go, for
    ``seconds``: each sends 64 bytes, half-closes and reads the echo to its
    end.  How many a second, and the failures."""
    done = failed = 0
    errors: list[str] = []
    t0 = time.perf_counter()
    while time.perf_counter() < t0 + seconds:
        try:
            with _connect(host, port, 30) as sock:
                sock.sendall(b"c" * 64)
                sock.shutdown(socket.SHUT_WR)
                got = b""
                while data := sock.recv(4096):
                    got += data
            if got != b"c" * 64:
                raise OSError(f"echoed {len(got)} bytes of 64")
            done += 1
        except OSError as exc:
            failed += 1
            errors.append(f"{type(exc).__name__}: {exc}")
    took = time.perf_counter() - t0
    return {"done": done, "failed": failed, "seconds": took, "errors": errors[:5]}


def bystander(
    host: str, port: int, seconds: float, interval: float
) -> dict[str, object]:
    """A client unrelated to a burst, on the same forward: every
    ``interval`` a new connection sends 64 bytes, half-closes and reads to
    the end of the reply; its round trips from connect to that end."""
    times: list[float] = []
    errors: list[str] = []
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        try:
            with _connect(host, port, 60) as sock:
                sock.sendall(b"b" * 64)
                sock.shutdown(socket.SHUT_WR)
                got = b""
                while data := sock.recv(4096):
                    got += data
            if not got:
                errors.append("no reply")
        except OSError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        took = time.perf_counter() - t0
        times.append(took)
        time.sleep(max(0.0, interval - took))
    return {
        "count": len(times),
        "worst_s": max(times, default=0.0),
        "median_s": statistics.median(times) if times else 0.0,
        "errors": errors[:5],
        "error_count": len(errors),
    }


def main(argv: list[str]) -> dict[str, object]:
    cmd, host, port, *rest = argv
    if cmd == "upload":
        return upload(host, int(port), int(rest[0]), float(rest[1]))
    if cmd == "download":
        return download(host, int(port), int(rest[0]), float(rest[1]))
    if cmd == "rtt":
        most = float(rest[3]) if len(rest) > 3 else float("inf")
        return rtt(host, int(port), int(rest[0]), int(rest[1]), float(rest[2]), most)
    if cmd == "conc":
        return conc(host, int(port), int(rest[0]), int(rest[1]), float(rest[2]))
    if cmd == "burst":
        return burst(host, int(port), float(rest[0]), float(rest[1]), rest[2])
    if cmd == "churn":
        return churn(host, int(port), float(rest[0]))
    if cmd == "bystander":
        return bystander(host, int(port), float(rest[0]), float(rest[1]))
    raise SystemExit(f"unknown workload {cmd!r}")


if __name__ == "__main__":
    import resource

    # 1000 connections at once need the descriptors.
    _soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))
    try:
        out = main(sys.argv[1:])
    except OSError as exc:
        out = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out), flush=True)
