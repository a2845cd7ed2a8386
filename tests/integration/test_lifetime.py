"""The engine lives exactly as long as its caller, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from nbtunnel import EngineError, Manager
from nbtunnel.client import display
from nbtunnel.client.engine_side import EngineSide
from nbtunnel.ui.panel import view
from nbtunnel.ui.panel.ticker import fetch

from tests.rig import clients, procs

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _wait_exited(pid: int, timeout: float) -> bool:
    """Exited, reaped or not: an orphan's zombie stays until PID 1 reaps it,
    and this container's PID 1 does not.  Its main thread is "Z" before the
    other threads have closed the fds they share, so wait for ports too."""
    return clients.wait_until(lambda: not procs.is_alive(pid), timeout, 0.01)


def _caller(sshd, targets) -> subprocess.Popen[str]:
    """A separate Python process that opens a tunnel and then idles."""
    code = textwrap.dedent(
        f"""
        import json, sys, time
        import nbtunnel
        t = nbtunnel.open({sshd.line("-L", f"0:{targets.host}:{targets.echo}")!r})
        m = nbtunnel.default_manager()
        print(json.dumps({{"port": t.forwards[0].listen_port, "engine": m.engine_pid}}), flush=True)
        time.sleep(600)
        """
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_sigkill_of_the_caller_ends_its_engine_within_2_s(sshd, targets) -> None:
    before = set(sshd.session_pids())
    caller = _caller(sshd, targets)
    try:
        assert caller.stdout is not None
        info = json.loads(caller.stdout.readline())
        port, engine = info["port"], info["engine"]
        assert engine != caller.pid and procs.is_alive(engine)
        assert clients.echo_roundtrip("127.0.0.1", port, b"alive", 10) == b"alive"
        sessions = set(sshd.session_pids()) - before
        assert sessions
        caller.kill()
        killed_at = time.monotonic()
        caller.wait(10)
        assert _wait_exited(engine, 2.0), "the engine outlived its caller"
        assert time.monotonic() - killed_at < 2.5
        # The main thread shows "Z" as soon as it is done, while the other
        # threads may still be dropping the shared fd table: the listener
        # closes a moment later, not necessarily before that.
        assert clients.wait_until(
            lambda: clients.port_is_closed("127.0.0.1", port), 1.0
        )
        assert clients.wait_until(lambda: not (set(sshd.session_pids()) & sessions), 5)
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait(10)
        if caller.stdout is not None:
            caller.stdout.close()


def test_sigterm_of_the_engine_stops_its_forwards(sshd, targets) -> None:
    manager = Manager(engine="process")
    try:
        t = manager.open(sshd.line("-L", f"0:{targets.host}:{targets.echo}"))
        port = t.forwards[0].listen_port
        engine = manager.engine_pid
        assert engine is not None
        os.kill(engine, signal.SIGTERM)
        assert procs.wait_gone(engine, 5)
        assert clients.port_is_closed("127.0.0.1", port)
        assert t.state == "failed"
        assert "engine" in (t.error or "")
        # The next open starts a new engine.
        t2 = manager.open(sshd.line("-L", f"0:{targets.host}:{targets.echo}"))
        assert manager.engine_pid != engine
        assert (
            clients.echo_roundtrip("127.0.0.1", t2.forwards[0].listen_port, b"x", 10)
            == b"x"
        )
    finally:
        manager.close()


def test_sigkill_of_the_engine_is_said_on_every_handle_within_5_s(
    sshd, targets
) -> None:
    # An OOM kill in a JupyterHub pod is a SIGKILL of the engine: every
    # handle, table and panel row says so, and an event does, not just
    # "the engine stopped" (issue 20, item 6).
    manager = Manager(engine="process")
    events: list[dict[str, object]] = []
    manager.subscribe(events.append)
    try:
        echo = f"0:{targets.host}:{targets.echo}"
        t1 = manager.open(sshd.line("-L", echo, "-D", "0"))
        t2 = manager.open(sshd.line("-L", echo), name="second")
        ports = [f.listen_port for t in (t1, t2) for f in t.forwards]
        engine = manager.engine_pid
        assert engine is not None
        os.kill(engine, signal.SIGKILL)  # the engine we started, by its pid
        killed_at = time.monotonic()
        handles = [t1, t2, *t1.forwards, *t2.forwards]

        def said() -> bool:
            return all("killed by SIGKILL" in (h.error or "") for h in handles)

        clients.wait_until(said, 5.0, 0.05, "every handle saying SIGKILL")
        seconds = time.monotonic() - killed_at
        print(f"every handle said SIGKILL {seconds:.2f} s after the kill")
        assert t1.state == t2.state == "failed"
        assert all(f.state == "failed" for f in (*t1.forwards, *t2.forwards))
        why = t1.error or ""
        assert f"(pid {engine})" in why and "signal 9" in why
        assert "lack of memory" in why  # said as a possibility, for SIGKILL only

        # The handles are marked just before the event goes to subscribers
        # (the same delivery, on the engine's reader thread).
        def exited_events() -> list[dict[str, object]]:
            return [e for e in events if e.get("event") == "engine_exited"]

        clients.wait_until(
            lambda: bool(exited_events()), 5.0, 0.01, "the engine_exited event"
        )
        exited = exited_events()
        assert len(exited) == 1, events
        assert exited[0]["signal"] == "SIGKILL" and exited[0]["pid"] == engine
        assert exited[0]["status"] == -9
        # The tunnels' own event lists, `%tunnel`'s table and the panel's rows.
        assert any("killed by SIGKILL" in line for line in t1.events)
        assert any("killed by SIGKILL" in line for line in t2.events)
        table = display.text_table(manager.snapshots())
        assert table.count("killed by SIGKILL") == len(ports), table
        live = fetch(manager)
        assert not isinstance(live, str)
        rows = view.rows([snap for _, snap in live], view.Rates(), time.monotonic())
        assert len(rows) == len(ports)
        assert all("killed by SIGKILL" in r.error for r in rows)
        assert all(clients.port_is_closed("127.0.0.1", p) for p in ports)
        # A new open works: a new engine, and the dead one's tunnels let go.
        t3 = manager.open(sshd.line("-L", echo))
        assert manager.engine_pid not in (None, engine)
        port = t3.forwards[0].listen_port
        assert clients.echo_roundtrip("127.0.0.1", port, b"again", 10) == b"again"
        assert manager.tunnels() == [t3]
        assert "killed by SIGKILL" in (t1.error or "")  # the old handles still say it
    finally:
        manager.close()


def test_a_request_racing_the_engines_death_finds_no_engine() -> None:
    # Asked right after the engine is killed, before the thread reading its
    # output has seen the end: no "engine is gone" error for a listing or a
    # stop, and the next start makes a new engine.
    lost: list[str] = []
    side = EngineSide("process", on_event=lambda message: None, on_lost=lost.append)
    try:
        for _ in range(5):
            client = side.get()
            os.kill(client.pid, signal.SIGKILL)
            assert side.snapshots() in (None, [])
            side.stop(1)
            assert side.get() is not client
        assert len(lost) == 5
    finally:
        side.close()


def test_engine_ignores_an_interrupt_of_its_caller(sshd, targets) -> None:
    manager = Manager(engine="process")
    try:
        t = manager.open(sshd.line("-L", f"0:{targets.host}:{targets.echo}"))
        engine = manager.engine_pid
        assert engine is not None
        os.kill(engine, signal.SIGINT)
        time.sleep(0.3)
        assert procs.is_alive(engine)
        assert (
            clients.echo_roundtrip("127.0.0.1", t.forwards[0].listen_port, b"y", 10)
            == b"y"
        )
    finally:
        manager.close()
    assert procs.wait_gone(engine, 5)


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _cycle_every_kind(manager: Manager, sshd, targets, here) -> None:
    """Open -L, -R and -D on one connection, use each, stop."""
    line = sshd.line(
        "-L",
        f"0:{targets.host}:{targets.echo}",
        "-R",
        f"127.0.0.1:0:127.0.0.1:{here.echo}",
        "-D",
        "0",
    )
    with manager.open(line) as t:
        local, remote, dynamic = (f.listen_port for f in t.forwards)
        for _ in range(3):
            data = b"z" * 1000
            assert clients.echo_roundtrip("127.0.0.1", local, data, 10) == data
        assert clients.socks_echo(dynamic, "localhost", targets.echo, b"d") == b"d"
        got = clients.on_server(sshd, "echo", "127.0.0.1", remote, 1000)
        assert got == {"ok": True}


def test_no_leaks_in_the_engine_after_many_open_stop_cycles(
    sshd, targets, here
) -> None:
    manager = Manager(engine="process")
    try:

        def cycle() -> None:
            _cycle_every_kind(manager, sshd, targets, here)

        cycle()  # warm up: imports, the request threads' first use
        engine = manager.engine_pid
        assert engine is not None
        time.sleep(0.2)
        fds, threads = _fds(engine), _threads(engine)
        for _ in range(15):
            cycle()
        assert clients.wait_until(lambda: _threads(engine) <= threads, 5), (
            f"threads {threads} -> {_threads(engine)}"
        )
        assert clients.wait_until(lambda: _fds(engine) == fds, 5), (
            f"fds {fds} -> {_fds(engine)}"
        )
    finally:
        manager.close()


def test_no_leaks_in_the_caller_inline(sshd, targets, here) -> None:
    manager = Manager(engine="inline")

    def cycle() -> None:
        _cycle_every_kind(manager, sshd, targets, here)

    try:
        cycle()
        time.sleep(0.2)
        fds = _fds(os.getpid())
        names_before = sorted(t.name for t in threading.enumerate())
        for _ in range(10):
            cycle()
        assert clients.wait_until(
            lambda: sorted(t.name for t in threading.enumerate()) == names_before, 5
        ), [t.name for t in threading.enumerate()]
        assert clients.wait_until(lambda: _fds(os.getpid()) == fds, 5)
    finally:
        manager.close()


def test_closing_the_manager_ends_the_engine(sshd, targets) -> None:
    manager = Manager(engine="process")
    t = manager.open(sshd.line("-L", f"0:{targets.host}:{targets.echo}"))
    engine = manager.engine_pid
    port = t.forwards[0].listen_port
    manager.close()
    manager.close()
    assert engine is not None and procs.wait_gone(engine, 5)
    assert clients.port_is_closed("127.0.0.1", port)
    assert t.state == "stopped"


def test_an_engine_started_in_the_background_serves_the_first_open(
    sshd, targets
) -> None:
    before = procs.engines(os.getpid())
    manager = Manager(engine="process")
    try:
        manager.start_engine(background=True)
        assert clients.wait_until(lambda: manager.engine_pid is not None, 10)
        engine = manager.engine_pid
        assert engine in procs.engines(os.getpid())
        t = manager.open(sshd.line("-L", f"0:{targets.host}:{targets.echo}"))
        assert manager.engine_pid == engine  # no second engine
        port = t.forwards[0].listen_port
        assert clients.echo_roundtrip("127.0.0.1", port, b"x") == b"x"
    finally:
        manager.close()
    assert engine is not None and procs.wait_gone(engine, 5)
    assert procs.engines(os.getpid()) == before


def test_closing_during_a_background_start_leaves_no_engine() -> None:
    before = procs.engines(os.getpid())
    for _ in range(3):
        manager = Manager(engine="process")
        manager.start_engine(background=True)
        manager.close()
        # A start that had not begun must not begin after the close.
        time.sleep(0.5)
        assert manager.engine_pid is None
        assert clients.wait_until(lambda: procs.engines(os.getpid()) == before, 5)
    assert not [t for t in threading.enumerate() if t.name == "nbtunnel-engine-start"]


def test_an_engine_that_cannot_start_fails_the_open_that_needs_it(
    sshd, targets, monkeypatch
) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    manager = Manager(engine="process")
    try:
        with pytest.raises(EngineError, match=r"could not start.*nonexistent"):
            manager.start_engine()
        # In the background the error is kept quiet, and the open says it.
        manager.start_engine(background=True)
        with pytest.raises(EngineError, match=r"could not start.*nonexistent"):
            manager.open(sshd.line("-L", f"0:{targets.host}:{targets.echo}"))
        assert manager.engine_pid is None
    finally:
        manager.close()


def test_pdeathsig_ends_the_engine_when_a_forked_child_keeps_the_pipe_open(
    sshd, targets
) -> None:
    """The second guard: the pipe never reaches end-of-file, PR_SET_PDEATHSIG fires."""
    code = textwrap.dedent(
        f"""
        import json, os, time
        import nbtunnel
        t = nbtunnel.open({sshd.line("-L", f"0:{targets.host}:{targets.echo}")!r})
        engine = nbtunnel.default_manager().engine_pid
        child = os.fork()
        if child == 0:
            # Inherits the write end of the engine's stdin and never closes it.
            time.sleep(600)
            os._exit(0)
        print(json.dumps({{"engine": engine, "child": child,
                          "port": t.forwards[0].listen_port}}), flush=True)
        time.sleep(600)
        """
    )
    caller = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    child = None
    try:
        assert caller.stdout is not None
        info = json.loads(caller.stdout.readline())
        engine, child = info["engine"], info["child"]
        assert clients.echo_roundtrip("127.0.0.1", info["port"], b"up", 10) == b"up"
        caller.kill()
        caller.wait(10)
        assert procs.is_alive(child)  # the pipe is still open...
        assert _wait_exited(engine, 2.0)  # ...and yet the engine is gone
        assert clients.wait_until(
            lambda: clients.port_is_closed("127.0.0.1", info["port"]), 1.0
        )
    finally:
        if child is not None and procs.is_alive(child):
            os.kill(child, signal.SIGKILL)
        if caller.poll() is None:
            caller.kill()
            caller.wait(10)
        if caller.stdout is not None:
            caller.stdout.close()
