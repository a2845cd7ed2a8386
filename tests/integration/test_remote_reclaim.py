"""A fixed-port -R after a reconnect, against the rig's real sshd.

The server may refuse the port it gave before: the old session still holds it
until the server notices that session is gone (a frozen session, a link that
went dark).  The forward then stays ``reconnecting`` and asks again with the
reconnect back-off until the server lets go, as ssh under autossh would; a
refusal at the very first start still fails at once (ExitOnForwardFailure).

Keepalives run at 1 s x 2 here so that a frozen server shows within seconds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from nbtunnel import ForwardError, Manager

from tests.rig import clients, procs
from tests.rig.data import expected_sha256
from tests.rig.sshd import SshServer

pytestmark = pytest.mark.integration

ALIVE = ("-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2")
HOLD = 10.0  # how long the frozen session holds the port after the reconnect
MIB = 1024 * 1024


def _events(tunnel) -> str:
    return "\n".join(tunnel.events)


def _until(tunnel, predicate: Callable[[], object], timeout: float) -> None:
    """Wait for ``predicate``; on a timeout, say what the tunnel's events were."""
    try:
        clients.wait_until(predicate, timeout)
    except TimeoutError:
        raise AssertionError(
            f"not within {timeout} s; the events:\n{_events(tunnel)}"
        ) from None


def _freeze(server: SshServer) -> list[int]:
    """SIGSTOP every session of ``server`` there is now (not the listener: a
    new connection gets a new, running session)."""
    pids = [p for s in server.session_pids() for p in (s, *procs.descendants(s))]
    assert pids, "no session to freeze"
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    return pids


def _thaw(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


@contextlib.contextmanager
def _squatter(server: SshServer, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Someone else listening on ``port`` on the server's side; killed at the end."""
    argv = [
        shutil.which("python3") or "python3",
        "-c",
        "import socket, time; s = socket.socket(); "
        f"s.bind(('127.0.0.1', {port})); s.listen(); "
        "print('ready', flush=True); time.sleep(120)",
    ]
    squatter = subprocess.Popen(server.ns_argv(argv), stdout=subprocess.PIPE)
    try:
        assert squatter.stdout is not None
        assert squatter.stdout.readline() == b"ready\n"
        yield squatter
    finally:
        squatter.kill()
        squatter.wait()
        assert squatter.stdout is not None
        squatter.stdout.close()


@pytest.mark.slow
def test_a_port_held_by_a_frozen_session_is_back_once_the_server_lets_go(
    process_manager: Manager, fresh_sshd: SshServer, here
) -> None:
    server, manager = fresh_sshd, process_manager
    fixed = int(clients.on_server(server, "free-port")["port"])
    line = server.line(*ALIVE, "-R", f"127.0.0.1:{fixed}:127.0.0.1:{here.sink}")
    with manager.open(line) as t:
        (remote,) = t.forwards
        name = f"forward -R 127.0.0.1:{fixed}:127.0.0.1:{here.sink}"  # its spec
        old = _freeze(server)
        frozen_at = time.monotonic()
        try:
            # The keepalives notice, a new session logs in and is refused
            # the port, which the frozen one still holds.
            _until(t, lambda: f"{name} waiting" in _events(t), 20)
            refused_at = time.monotonic()
            clients.wait_until(lambda: t.state == "up", 5)  # the tunnel is
            assert remote.state == "reconnecting"  # its -R is not yet
            assert f"still holds 127.0.0.1:{fixed}" in str(remote.error)
            assert "asking again until it lets go" in str(remote.error)
            # The same line again is this tunnel, its forward still asking
            # (not a silently failed one).
            assert manager.open(line) is t
            time.sleep(max(0.0, HOLD - (time.monotonic() - refused_at)))
            assert remote.state == "reconnecting"
            assert "refused" in str(remote.error)
        finally:
            _thaw(old)
        # The old session reads its dead connection's end and exits, which
        # closes its listener: the server lets go.
        thawed_at = time.monotonic()
        clients.wait_until(
            lambda: not set(old) & set(server.session_pids()),
            10,
            message="the old session exits",
        )
        released_at = time.monotonic()
        _until(t, lambda: remote.state == "up", 30)
        restored = time.monotonic() - released_at
        print(
            f"\n-R back on its port {restored:.1f} s after the old session ended "
            f"({released_at - thawed_at:.2f} s after SIGCONT; the port held "
            f"{thawed_at - refused_at:.1f} s after the reconnect, "
            f"{thawed_at - frozen_at:.1f} s in all)"
        )
        assert restored < 30
        assert remote.listen_port == fixed
        events = _events(t)
        said = [
            "reconnecting",
            f"{name} waiting",
            "reconnected",
            f"{name} back on port {fixed}",
        ]
        assert all(x in events for x in said), events
        assert sorted(said, key=events.index) == said
        print(next(x for x in events.splitlines() if "back on port" in x))
        size = 8 * MIB
        reply = clients.on_server(server, "push", "127.0.0.1", fixed, size)
        assert (reply["count"], reply["sha256"]) == (size, expected_sha256(size))
        assert t.state == "up" and remote.state == "up"


def test_a_port_someone_else_took_is_asked_for_until_they_let_go(
    manager: Manager, fresh_sshd: SshServer, targets, here
) -> None:
    """The server cannot tell whose it is: a squatter is waited out the same way."""
    server = fresh_sshd
    fixed = int(clients.on_server(server, "free-port")["port"])
    line = server.line(
        *ALIVE,
        "-o",
        "ReconnectMaxDelay=1",
        "-R",
        f"127.0.0.1:{fixed}:127.0.0.1:{here.echo}",
        "-L",
        f"0:{targets.host}:{targets.echo}",
    )
    with manager.open(line) as t:
        remote, local = t.forwards
        server.stop(hard=True)
        with _squatter(server, fixed):
            server.restart()
            waiting = f"forward -R 127.0.0.1:{fixed}:127.0.0.1:{here.echo} waiting"
            _until(t, lambda: waiting in _events(t), 15)
            # The others carry on meanwhile.
            clients.wait_until(lambda: t.state == "up", 5)
            assert local.state == "up"
            port = local.listen_port
            assert clients.echo_roundtrip("127.0.0.1", port, b"ok", 10) == b"ok"
            time.sleep(2.5)  # a few more refusals, each said in the error
            assert remote.state == "reconnecting"
            assert "refused" in str(remote.error) and f"{fixed}" in str(remote.error)
            gone_at = time.monotonic()
        _until(t, lambda: remote.state == "up", 10)
        # ReconnectMaxDelay 1: asked at least once a second.
        assert time.monotonic() - gone_at < 3
        assert remote.listen_port == fixed
        assert clients.on_server(server, "echo", "127.0.0.1", fixed, 10_000)["ok"]
        events = _events(t)
        assert events.index("waiting") < events.index(f"back on port {fixed}")
        assert f"{waiting.removesuffix(' waiting')} failed" not in events


def test_the_asking_ends_after_reconnect_attempts(
    manager: Manager, fresh_sshd: SshServer, here
) -> None:
    server = fresh_sshd
    fixed = int(clients.on_server(server, "free-port")["port"])
    line = server.line(
        *ALIVE,
        "-o",
        "ReconnectAttempts=3",
        "-o",
        "ReconnectMaxDelay=1",
        "-R",
        f"127.0.0.1:{fixed}:127.0.0.1:{here.echo}",
    )
    with manager.open(line) as t:
        (remote,) = t.forwards
        server.stop(hard=True)
        with _squatter(server, fixed):
            server.restart()
            _until(t, lambda: remote.state == "failed", 15)
        assert "asked 3 times" in str(remote.error)
        assert "ReconnectAttempts" in str(remote.error)
        assert "refused to listen" in str(remote.error)
        spec = f"-R 127.0.0.1:{fixed}:127.0.0.1:{here.echo}"
        assert f"forward {spec} failed" in _events(t) and t.state == "up"


def test_a_refusal_at_the_first_start_still_fails_at_once(
    manager: Manager, fresh_sshd: SshServer, here
) -> None:
    server = fresh_sshd
    fixed = int(clients.on_server(server, "free-port")["port"])
    line = server.line("-R", f"127.0.0.1:{fixed}:127.0.0.1:{here.echo}")
    open_before = len(manager.tunnels())
    with _squatter(server, fixed):
        started = time.monotonic()
        with pytest.raises(
            ForwardError, match=f"refused to listen on 127.0.0.1:{fixed}"
        ):
            manager.open(line)
        assert time.monotonic() - started < 5
    assert len(manager.tunnels()) == open_before


@pytest.mark.parametrize("how", ["forward", "cancel", "tunnel"])
def test_stopping_while_it_asks_ends_the_asking_at_once(
    fresh_sshd: SshServer, here, how: str
) -> None:
    server = fresh_sshd
    fixed = int(clients.on_server(server, "free-port")["port"])
    manager = Manager(engine="inline")
    try:
        before = {t.name for t in threading.enumerate()}
        line = server.line(
            *ALIVE, "-R", f"127.0.0.1:{fixed}:127.0.0.1:{here.echo}", "-D", "0"
        )
        t = manager.open(line)
        remote, socks = t.forwards
        server.stop(hard=True)
        with _squatter(server, fixed):
            server.restart()
            # Refused 4 times: the next try is 2-4 s away (0.25 s doubling).
            clients.wait_until(lambda: "refused 4 times" in str(remote.error), 20)
            # The asking is a thread of its own, waiting for its next try.
            assert any(
                x.name.startswith("nbtunnel-reask") for x in threading.enumerate()
            )
            started = time.monotonic()
            if how == "forward":
                remote.stop()
            elif how == "cancel":
                assert manager.cancel("-KR", f"127.0.0.1:{fixed}") is remote
            else:
                t.stop()
            took = time.monotonic() - started
            assert took < 1, took
            assert remote.state == "stopped"
            assert not any(
                x.name.startswith("nbtunnel-reask") for x in threading.enumerate()
            )
            if how != "tunnel":
                assert t.state == "up" and socks.state == "up"
        if how != "tunnel":
            # Stopped means stopped: the port the squatter left is not taken.
            time.sleep(1)
            assert clients.on_server(server, "closed", "127.0.0.1", fixed)["closed"]
            t.stop()
        left = {x.name for x in threading.enumerate() if x.name.startswith("nbtunnel")}
        assert left <= before
    finally:
        manager.close()
