"""Exhausted limits: a forward out of descriptors or threads refuses what it
must, counts it, never leaves a client hanging, and serves again after.

The engine is a real process under real limits: ``prlimit`` on its
descriptors, a pids cgroup on its threads, or a caller started with a low
``ulimit -n``; the clients are real sockets against the rig's sshd.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import selectors
import socket
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nbtunnel import ForwardError, Manager
from nbtunnel.grammar.forwards import parse_forward
from nbtunnel.status import ForwardStats

from tests.rig import clients, procs

pytestmark = pytest.mark.integration
resource = pytest.importorskip("resource", reason="descriptor limits are POSIX's")

ROOT = Path(__file__).resolve().parents[2]
# The bound the issue sets for serving again once the pressure ends.
RECOVERY = 40.0
# How long a client may go without an answer before it counts as hung:
# well past the accept loop's patience (3 s) and its longest back-off (1 s).
ANSWER_WITHIN = 15.0


@pytest.fixture
def own_engine(sshd, targets) -> Iterator[tuple[Manager, object]]:
    """An engine process of this test's own (its limits are changed), with a
    -L to the echo target and a -D."""
    manager = Manager(engine="process")
    try:
        tunnel = manager.open(
            sshd.line("-L", f"0:{targets.host}:{targets.echo}", "-D", "0")
        )
        yield manager, tunnel
    finally:
        pid = manager.engine_pid
        if pid is not None and procs.is_alive(pid):
            # Back to the rig's limit, so that stopping is not starved.
            with contextlib.suppress(OSError):
                resource.prlimit(
                    pid,
                    resource.RLIMIT_NOFILE,
                    resource.getrlimit(resource.RLIMIT_NOFILE),
                )
        manager.close()


def _socks_request(host: str, port: int) -> bytes:
    """A SOCKS5 greeting and CONNECT, sent at once (the proxy keeps what follows)."""
    try:
        ip = ipaddress.ip_address(host)
        addr = (b"\x01" if ip.version == 4 else b"\x04") + ip.packed
    except ValueError:
        addr = b"\x03" + bytes([len(host)]) + host.encode()
    return b"\x05\x01\x00" + b"\x05\x01\x00" + addr + struct.pack(">H", port)


def _connect_all(
    port: int, n: int, head: bytes, tag: str
) -> list[tuple[socket.socket, bytes]]:
    """n clients, each having sent ``head`` and a payload of its own, not yet read."""
    flood = []
    for i in range(n):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        payload = f"{tag}-{i:05d}.".encode() * 8
        sock.sendall(head + payload)
        flood.append((sock, payload))
    return flood


def _outcomes(
    flood: list[tuple[socket.socket, bytes]],
    timeout: float,
    *,
    close_served: bool = False,
) -> tuple[int, int, int]:
    """(served, refused, hung): served got its payload echoed, refused was
    closed or reset first, hung had neither within ``timeout``.  With
    ``close_served`` each served client leaves at once, freeing its
    descriptor in the engine for the next."""
    served = refused = 0
    got = {sock: b"" for sock, _ in flood}
    wanted = dict(flood)
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        for sock, _ in flood:
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ)
        while sel.get_map() and time.monotonic() < deadline:
            for key, _ in sel.select(0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""  # a reset
                got[sock] += data
                if got[sock].endswith(wanted[sock]):
                    served += 1
                    sel.unregister(sock)
                    if close_served:
                        sock.close()
                elif not data:
                    refused += 1
                    sel.unregister(sock)
        hung = len(sel.get_map())
    return served, refused, hung


def _close(flood: list[tuple[socket.socket, bytes]]) -> None:
    for sock, _ in flood:
        sock.close()


def _serves(forward, targets) -> bool:
    """One echo through the -L or the -D, right now."""
    data = b"after the pressure"
    try:
        if forward.kind == "local":
            back = clients.echo_roundtrip("127.0.0.1", forward.listen_port, data, 5)
        else:
            back = clients.socks_echo(
                forward.listen_port, targets.host, targets.echo, data, timeout=5
            )
    except OSError:
        return False
    return back == data


def _warnings(manager: Manager) -> list[str]:
    """The engine's warnings from now on, as they arrive."""
    said: list[str] = []

    def take(message: dict[str, object]) -> None:
        if message.get("event") == "log" and int(str(message.get("level"))) >= 30:
            said.append(str(message.get("message")))

    manager.subscribe(take)
    return said


def _failed(stats: ForwardStats) -> int:
    return stats.connections_failed


@pytest.mark.slow
def test_a_flood_beyond_the_fd_limit_is_refused_counted_and_served_again(
    own_engine, targets
) -> None:
    manager, tunnel = own_engine
    local, dynamic = tunnel.forwards
    assert _serves(local, targets) and _serves(dynamic, targets)
    warnings = _warnings(manager)
    pid = manager.engine_pid
    assert pid is not None
    # Room for a few dozen clients, then none.
    limit = len(os.listdir(f"/proc/{pid}/fd")) + 24
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
    head = _socks_request(targets.host, targets.echo)
    flood_l = _connect_all(local.listen_port, 150, b"", "L")
    flood_d = _connect_all(dynamic.listen_port, 100, head, "D")
    try:
        # The served ones stay open: the shortage lasts, the queue stands still.
        started = time.monotonic()
        served_l, refused_l, hung_l = _outcomes(flood_l, ANSWER_WITHIN)
        served_d, refused_d, hung_d = _outcomes(flood_d, ANSWER_WITHIN)
        answered_in = time.monotonic() - started
        print(
            f"fd limit {limit}: -L served {served_l} refused {refused_l} hung {hung_l}; "
            f"-D served {served_d} refused {refused_d} hung {hung_d}; "
            f"all answered in {answered_in:.1f} s"
        )
        assert hung_l == 0 and hung_d == 0, "clients left waiting for ever"
        assert refused_l > 0 and refused_d > 0, "the limit never bit"
        assert served_l + served_d > 0
        # Every refusal is counted on its forward, with the reason.
        for forward, refused in ((local, refused_l), (dynamic, refused_d)):
            stats = forward.stats
            assert _failed(stats) >= refused, (forward.kind, stats)
            assert "file descriptors" in (stats.last_error or ""), stats.last_error
            assert "ulimit -n" in (stats.last_error or "")
            assert forward.state == "up"
    finally:
        _close(flood_l)
        _close(flood_d)
    # The pressure ends (the clients holding the descriptors leave), the
    # limit stays as low: both forwards serve again, by themselves.
    ended = time.monotonic()
    clients.wait_until(
        lambda: _serves(local, targets) and _serves(dynamic, targets),
        RECOVERY,
        0.2,
        "both forwards serving again",
    )
    print(f"serving again {time.monotonic() - ended:.2f} s after the pressure ended")
    assert clients.echo_many("127.0.0.1", local.listen_port, 10, 20) == 10
    # Said once per shortage, not at every try (it was every 50 ms).
    said = [w for w in warnings if "cannot accept" in w]
    print(f"{len(warnings)} warnings logged, {len(said)} about accepting")
    assert 1 <= len(said) <= 6, said


@pytest.mark.slow
def test_clients_queued_in_a_short_fd_shortage_are_all_served(
    own_engine, targets
) -> None:
    manager, tunnel = own_engine
    local = tunnel.forwards[0]
    pid = manager.engine_pid
    assert pid is not None
    warnings = _warnings(manager)
    holders = _connect_all(local.listen_port, 5, b"", "hold")
    queued: list[tuple[socket.socket, bytes]] = []
    try:
        assert _outcomes(holders, 10)[0] == 5
        # Not one descriptor more: the next clients wait in the backlog.
        limit = len(os.listdir(f"/proc/{pid}/fd"))
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
        queued = _connect_all(local.listen_port, 20, b"", "queued")
        time.sleep(1.0)  # within the loop's patience: nobody is refused
    finally:
        _close(holders)
    # Five descriptors free: the queue moves as each served client leaves.
    try:
        served, refused, hung = _outcomes(queued, ANSWER_WITHIN, close_served=True)
    finally:
        _close(queued)
    print(f"queued 20 in a 1 s shortage: served {served} refused {refused} hung {hung}")
    assert (served, refused, hung) == (20, 0, 0)
    assert local.stats.connections_failed == 0
    assert any("cannot accept" in w for w in warnings), "no shortage happened"


# -- threads: a pids cgroup -------------------------------------------------


class PidsCgroup:
    """A child pids cgroup (v2, or v1's pids hierarchy) holding one process."""

    def __init__(self, parent: Path) -> None:
        self.parent = parent
        self.path = parent / f"nbtunnel-test-{os.getpid()}-{time.monotonic_ns()}"
        self.path.mkdir()
        self._pids: list[int] = []

    def move(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))
        self._pids.append(pid)

    @property
    def current(self) -> int:
        return int((self.path / "pids.current").read_text())

    def limit(self, value: int | str) -> None:
        (self.path / "pids.max").write_text(str(value))

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.limit("max")
        for pid in self._pids:
            with contextlib.suppress(OSError):
                (self.parent / "cgroup.procs").write_text(str(pid))
        clients.wait_until(lambda: _rmdir(self.path), 10, 0.1, f"removing {self.path}")


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _pids_parent() -> Path | str:
    """Where a pids cgroup can be made, or why none can."""
    mounts = [
        line.split() for line in Path("/proc/self/mounts").read_text().splitlines()
    ]
    for _, where, fstype, options, *_ in mounts:
        if fstype == "cgroup" and "pids" in options.split(","):
            return Path(where)  # cgroup v1: its own pids hierarchy
    for _, where, fstype, *_ in mounts:
        root = Path(where)
        if fstype != "cgroup2":
            continue
        if "pids" not in (root / "cgroup.controllers").read_text().split():
            continue
        with contextlib.suppress(OSError):
            (root / "cgroup.subtree_control").write_text("+pids")
        if "pids" in (root / "cgroup.subtree_control").read_text().split():
            return root
        return f"cgroup v2 at {root} offers pids but will not delegate it to children"
    return "no cgroup hierarchy with the pids controller here (v1 or v2)"


@pytest.fixture
def pids_cgroup() -> Iterator[PidsCgroup]:
    if os.geteuid() != 0:
        pytest.skip("a pids cgroup needs root")
    parent = _pids_parent()
    if isinstance(parent, str):
        pytest.skip(parent)
    try:
        group = PidsCgroup(parent)
    except OSError as exc:
        pytest.skip(f"cannot make a cgroup under {parent}: {exc}")
    try:
        yield group
    finally:
        group.remove()


def _one_client(port: int, head: bytes) -> str:
    """'served', 'refused' or 'hung': one client's fate."""
    flood = _connect_all(port, 1, head, "one")
    try:
        served, refused, _ = _outcomes(flood, ANSWER_WITHIN)
    finally:
        _close(flood)
    return "served" if served else "refused" if refused else "hung"


@pytest.mark.slow
def test_out_of_threads_clients_are_refused_counted_and_served_again(
    own_engine, targets, pids_cgroup
) -> None:
    manager, tunnel = own_engine
    local, dynamic = tunnel.forwards
    pid = manager.engine_pid
    assert pid is not None
    pids_cgroup.move(pid)
    before = (_failed(local.stats), _failed(dynamic.stats))
    listening = procs.listening_tcp(pid)
    # Not one more thread.
    pids_cgroup.limit(pids_cgroup.current)
    # A forward that cannot start its accept thread fails in one line and
    # leaves nothing bound (the request itself is served without a thread).
    with pytest.raises(ForwardError) as added:
        manager.add(tunnel, [parse_forward("-L", f"0:{targets.host}:{targets.echo}")])
    print(f"adding a -L: {added.value}")
    assert "thread" in str(added.value) and "\n" not in str(added.value)
    assert procs.listening_tcp(pid) == listening
    head = _socks_request(targets.host, targets.echo)
    fates = {
        "local": [_one_client(local.listen_port, b"") for _ in range(15)],
        "dynamic": [_one_client(dynamic.listen_port, head) for _ in range(15)],
    }
    print({kind: {f: got.count(f) for f in set(got)} for kind, got in fates.items()})
    assert procs.is_alive(pid), "the engine died of the limit"
    for forward, got, failed_before in zip(
        (local, dynamic), fates.values(), before, strict=True
    ):
        assert "hung" not in got, f"{forward.kind}: clients left waiting for ever"
        refused = got.count("refused")
        assert refused > 0, "the limit never bit"
        stats = forward.stats  # a request the engine answers without a thread
        assert _failed(stats) - failed_before >= refused, stats
        assert "thread" in (stats.last_error or ""), stats.last_error
        assert forward.state == "up"
    pids_cgroup.limit("max")
    ended = time.monotonic()
    clients.wait_until(
        lambda: _serves(local, targets) and _serves(dynamic, targets),
        RECOVERY,
        0.2,
        "both forwards serving again",
    )
    print(f"serving again {time.monotonic() - ended:.2f} s after the limit rose")
    assert clients.echo_many("127.0.0.1", local.listen_port, 20, 20) == 20


# -- 100 forwards under a soft limit of 256 ---------------------------------


def _hundred_forwards(sshd, targets, soft: int, hard: int) -> dict[str, object]:
    """A caller started with ``ulimit -n`` soft/hard opens 100 forwards in
    one tunnel; what it saw, and the limits its engine ran with."""
    tokens: list[str] = []
    for _ in range(100):
        tokens += ["-L", f"0:{targets.host}:{targets.echo}"]
    line = sshd.line(*tokens)
    code = textwrap.dedent(
        f"""
        import json, sys
        from nbtunnel import Manager
        m = Manager(engine="process")
        out = {{}}
        try:
            t = m.open({line!r})
            out["ports"] = [f.listen_port for f in t.forwards]
            out["up"] = [f.state for f in t.forwards].count("up")
        except Exception as e:
            out["error"] = f"{{type(e).__name__}}: {{e}}"
            # Everything was undone: one forward still opens.
            one = m.open({sshd.line("-L", f"0:{targets.host}:{targets.echo}")!r})
            out["ports"] = [one.forwards[0].listen_port]
        out["limits"] = open(f"/proc/{{m.engine_pid}}/limits").read()
        print(json.dumps(out), flush=True)
        sys.stdin.read()
        m.close()
        """
    )
    # prlimit(1) execs the caller with the limit, as `ulimit -n` would.
    caller = subprocess.Popen(
        ["prlimit", f"--nofile={soft}:{hard}", sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert caller.stdout is not None and caller.stdin is not None
        out = json.loads(caller.stdout.readline() or "{}")
        ports = out.get("ports") or []
        assert isinstance(ports, list)
        out["echoed"] = sum(
            clients.echo_roundtrip("127.0.0.1", port, b"hi", 10) == b"hi"
            for port in ports
        )
        caller.stdin.close()
        caller.wait(30)
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait(10)
        if caller.stdout is not None:
            caller.stdout.close()
    return out


def _open_files(limits_text: str) -> tuple[str, str]:
    row = next(r for r in limits_text.splitlines() if r.startswith("Max open files"))
    soft, hard = row.split()[3:5]
    return soft, hard


@pytest.mark.slow
def test_a_hundred_forwards_under_a_soft_limit_of_256(sshd, targets) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert hard > 2048, "the rig runs with a high hard limit"
    out = _hundred_forwards(sshd, targets, 256, hard)
    print(f"soft 256, hard {hard}: engine limits {_open_files(str(out['limits']))}")
    assert "error" not in out, out.get("error")
    assert out["up"] == 100 and out["echoed"] == 100
    # The engine took what the hard limit allows.
    assert _open_files(str(out["limits"])) == (str(hard), str(hard))


@pytest.mark.slow
def test_a_hundred_forwards_with_a_hard_limit_of_256_fail_in_one_line(
    sshd, targets
) -> None:
    out = _hundred_forwards(sshd, targets, 256, 256)
    error = str(out.get("error"))
    print(f"soft = hard = 256: {error}")
    assert error.startswith("ForwardError: "), error
    assert "\n" not in error and "internal error" not in error
    assert "out of file descriptors" in error and "ulimit -n" in error
    assert "256" in error
    assert out["echoed"] == 1  # the failure left nothing behind; one still opens
