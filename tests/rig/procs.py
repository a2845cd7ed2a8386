"""Process helpers built on /proc (Linux only, like the rig itself)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

_PROC = Path("/proc")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of pid, or None if it does not exist."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may contain spaces and parentheses: split after the last ")"
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def is_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (a zombie is dead, only unreaped)."""
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def exists(pid: int) -> bool:
    """True if pid has a /proc entry, zombies included."""
    return _stat(pid) is not None


def cmdline(pid: int) -> str:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _all_stats() -> dict[int, tuple[str, int]]:
    out: dict[int, tuple[str, int]] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                out[int(entry.name)] = st
    return out


def children(pid: int, *, include_zombies: bool = False) -> list[int]:
    """Direct children of pid."""
    return sorted(
        p
        for p, (state, ppid) in _all_stats().items()
        if ppid == pid and (include_zombies or state not in ("Z", "X"))
    )


def engines(pid: int) -> list[int]:
    """The nbtunnel engine processes among pid's children."""
    return [p for p in children(pid) if "nbtunnel.engine" in cmdline(p)]


def descendants(pid: int) -> list[int]:
    """All live descendants of pid, breadth first (parents before children)."""
    stats = _all_stats()
    by_parent: dict[int, list[int]] = {}
    for p, (state, ppid) in stats.items():
        if state not in ("Z", "X"):
            by_parent.setdefault(ppid, []).append(p)
    out: list[int] = []
    frontier = [pid]
    while frontier:
        nxt: list[int] = []
        for p in frontier:
            kids = sorted(by_parent.get(p, []))
            out.extend(kids)
            nxt.extend(kids)
        frontier = nxt
    return out


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    fd_dir = _PROC / str(pid) / "fd"
    try:
        fds = list(fd_dir.iterdir())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _decode_addr(hexaddr: str) -> str:
    raw = bytes.fromhex(hexaddr)
    # /proc/net/tcp{,6} prints each 32-bit word in host (little-endian) order
    fixed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(fixed) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, fixed)


def listening_tcp(pid: int) -> set[tuple[str, int]]:
    """(address, port) of the TCP sockets that pid itself holds in LISTEN state.

    Reads the tables of pid's own network namespace and keeps only sockets
    whose inode is one of pid's fds, so it answers "is *this* process
    listening" without opening a connection that the server would log.
    """
    mine = _socket_inodes(pid)
    found: set[tuple[str, int]] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (_PROC / str(pid) / "net" / table).read_text().splitlines()[1:]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        for line in lines:
            f = line.split()
            if f[3] != "0A" or int(f[9]) not in mine:  # 0A = TCP_LISTEN
                continue
            addr, port = f[1].split(":")
            found.add((_decode_addr(addr), int(port, 16)))
    return found


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until pid has no /proc entry at all (exited and reaped)."""
    deadline = time.monotonic() + timeout
    while exists(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def stop_tree(
    proc: subprocess.Popen[bytes], *, hard: bool = False, grace: float = 3.0
) -> None:
    """Stop proc (a child of ours) and every process below it, leaving no zombies.

    PID 1 in this kind of container does not reap orphans, so a process whose
    parent dies first stays a zombie for good. Hence the order: the children
    go first, each waited for until its parent has reaped it, and the root,
    which is ours to reap, goes last.

    hard=False sends SIGTERM to the direct children first (an sshd monitor
    passes it on to its own child and reaps it), then SIGKILLs whatever is
    left from the leaves up. hard=True SIGKILLs everything at once from the
    leaves up, which is what a crash looks like to a client.
    """
    root = proc.pid
    if proc.poll() is None:
        if not hard:
            for pid in children(root):
                _signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            # zombies count: the root must have reaped them before it goes
            while children(root, include_zombies=True) and time.monotonic() < deadline:
                time.sleep(0.01)
        # Reverse breadth-first order puts every process before its parent.
        for pid in reversed(descendants(root)):
            _signal(pid, signal.SIGKILL)
            wait_gone(pid, 1.0)
        _signal(root, signal.SIGKILL if hard else signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal(root, signal.SIGKILL)
    proc.wait()


def interruptible() -> None:
    """preexec_fn: SIGINT as a terminal sends it, whoever started the tests.

    A shell starts background jobs with SIGINT ignored, and an ignored
    signal stays ignored across exec: a Ctrl-C test would then hang.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
