"""The manager's rules, as every face meets them against the rig's real sshd:
the same line again is the same tunnel, a second line to the same destination
joins its SSH connection, a fixed port another forward holds is refused
naming the holder, and -K cancels one forward.  (The magic's own test is in
tests/notebook/test_magic.py, the panel's in tests/notebook/test_panel_kernel.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbtunnel
import pytest
from nbtunnel import ForwardError, Manager, SpecError

from tests.rig import clients, procs
from tests.rig.sshd import SshServer, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _logins(server: SshServer) -> int:
    return server.log.read_text(errors="replace").count("Accepted publickey")


@pytest.fixture
def api() -> Iterator[None]:
    """``nbtunnel.open`` itself (the default manager); everything stopped after."""
    yield
    nbtunnel.stop_all()
    assert nbtunnel.tunnels() == []


def test_the_same_line_twice_is_the_same_tunnel_with_the_same_ports(
    api: None, fresh_sshd: SshServer, targets
) -> None:
    line = fresh_sshd.line("-L", f"0:{targets.host}:{targets.echo}", "-D", "0")
    first = nbtunnel.open(line)
    ports = [f.listen_port for f in first.forwards]
    again = nbtunnel.open(line)  # a cell run again
    assert again is first
    assert [f.listen_port for f in again.forwards] == ports
    assert nbtunnel.tunnels() == [first]
    assert clients.echo_roundtrip("127.0.0.1", ports[0], b"once", 10) == b"once"
    assert _logins(fresh_sshd) == 1
    # Stopped, the same line opens a new tunnel.
    first.stop()
    with nbtunnel.open(line) as third:
        assert third is not first and third.state == "up"


def test_a_second_line_to_the_same_destination_joins_its_connection(
    api: None, fresh_sshd: SshServer, targets
) -> None:
    server = fresh_sshd
    echo = nbtunnel.open(server.line("-L", f"0:{targets.host}:{targets.echo}"))
    web = nbtunnel.open(server.line("-L", f"0:{targets.host}:{targets.http}"))
    assert web is echo and len(echo.forwards) == 2
    assert _logins(server) == 1 and len(server.session_pids()) == 1
    status, _ = clients.http_get("127.0.0.1", echo.forwards[1].listen_port, "/bytes/3")
    assert status == 200
    # The joining line again adds nothing.
    nbtunnel.open(server.line("-L", f"0:{targets.host}:{targets.http}"))
    assert len(echo.forwards) == 2
    # Other options are another connection, as ssh's ControlMaster has it.
    other = nbtunnel.open(
        server.line("-o", "Compression=yes", "-L", f"0:{targets.host}:{targets.echo}")
    )
    assert other is not echo and _logins(server) == 2


def test_a_fixed_port_held_by_another_forward_fails_naming_the_holder(
    api: None, sshd: SshServer, targets
) -> None:
    port = free_port()
    held = nbtunnel.open(
        sshd.line("-L", f"{port}:{targets.host}:{targets.echo}"), name="db"
    )
    before = len(sshd.session_pids())
    # Another tunnel (other options: another connection) asking for it.
    other = sshd.line(
        "-o", "ServerAliveInterval=7", "-L", f"{port}:{targets.host}:{targets.http}"
    )
    with pytest.raises(ForwardError) as info:
        nbtunnel.open(other)
    message = str(info.value)
    assert f"port {port}" in message and "tunnel 'db'" in message
    assert f"-L {port}:{targets.host}:{targets.echo}" in message
    # Nothing was opened for it, and the holder serves on.
    assert nbtunnel.tunnels() == [held]
    assert len(sshd.session_pids()) == before
    assert clients.echo_roundtrip("127.0.0.1", port, b"mine", 10) == b"mine"
    # Adding it to the holder's own tunnel is refused the same way.
    with pytest.raises(ForwardError, match="tunnel 'db'"):
        nbtunnel.default_manager().add(held, nbtunnel.parse(other).forwards)
    # Once the holder is cancelled (ssh's -KL), the port is free for it.
    cancelled = nbtunnel.default_manager().cancel("-KL", str(port))
    assert cancelled is held.forwards[0] and cancelled.state == "stopped"
    with nbtunnel.open(other) as taken:
        assert taken.forwards[0].listen_port == port


def test_a_port_asked_for_twice_in_one_line_is_refused_before_connecting(
    fresh_sshd: SshServer, targets
) -> None:
    port = free_port()
    line = fresh_sshd.line(
        "-L", f"{port}:{targets.host}:{targets.echo}", "-D", str(port)
    )
    manager = Manager(engine="inline")
    try:
        with pytest.raises(ForwardError) as info:
            manager.open(line)
    finally:
        manager.close()
    assert f"port {port} of '-D {port}' is asked for twice" in str(info.value)
    assert f"'-L {port}:{targets.host}:{targets.echo}'" in str(info.value)
    assert _logins(fresh_sshd) == 0


def test_cancel_names_what_it_did_not_find(sshd: SshServer, targets) -> None:
    manager = Manager(engine="inline")
    try:
        manager.open(sshd.line("-L", f"0:{targets.host}:{targets.echo}"))
        with pytest.raises(SpecError, match="no -R forward listens on 1234"):
            manager.cancel("-KR", "1234")
        with pytest.raises(SpecError, match="not -KX"):
            manager.cancel("-KX", "1234")
    finally:
        manager.close()


def test_cancel_names_a_unix_socket_forward_by_its_path(
    sshd: SshServer, targets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Through the magic's own words (ui.magic.run), as %tunnel -KL PATH.
    from nbtunnel.ui.magic import run

    path = tmp_path / "db.sock"
    manager = Manager(engine="inline")
    try:
        line = sshd.line("-L", f"{path}:{targets.host}:{targets.echo}", "-L", "0:a:1")
        tunnel = manager.open(line)
        assert clients.echo_roundtrip_unix(path, b"before", 10) == b"before"
        # What -KL reads is ssh's -KL, and its errors say -KL, not -D.
        with pytest.raises(SpecError, match="bad -KL 'abc': port 'abc' is not"):
            run(["-KL", "abc"], manager)
        with pytest.raises(SpecError, match="no -L forward listens on /tmp/other"):
            run(["-KL", "/tmp/other.sock"], manager)
        run(["-KL", str(path)], manager)
        said = capsys.readouterr().out
        assert said == (
            f"cancelled -L {path}:{targets.host}:{targets.echo} on tunnel "
            f"{tunnel.name} (it listened on this machine {path})\n"
        )
        assert tunnel.forwards[0].state == "stopped"
        assert tunnel.forwards[1].state == "up"  # the other forward serves on
        assert not path.exists()
    finally:
        manager.close()


def test_the_cli_refuses_a_held_port_the_same_way(
    fresh_sshd: SshServer, targets
) -> None:
    port = free_port()
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "nbtunnel",
            *fresh_sshd.args(),
            "-L",
            f"{port}:{targets.host}:{targets.echo}",
            "-L",
            f"{port}:{targets.host}:{targets.http}",
            fresh_sshd.destination,
        ],
        preexec_fn=procs.interruptible,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert ran.returncode == 1, ran.stderr
    assert ran.stderr.splitlines() == [
        f"nbtunnel: port {port} of '-L {port}:{targets.host}:{targets.http}' is "
        f"asked for twice: '-L {port}:{targets.host}:{targets.echo}' of the same "
        "line holds it; pick another port (0 for any free one)"
    ]
    assert _logins(fresh_sshd) == 0
    assert clients.port_is_closed("127.0.0.1", port)


@pytest.mark.parametrize("second_name", [None, "other"])
def test_a_remote_port_held_on_the_same_connection_is_named_before_asking(
    fresh_sshd: SshServer, here, second_name: str | None
) -> None:
    # Unnamed, the second line joins the first tunnel; named, it is a tunnel
    # of its own on the same connection: the port is refused either way,
    # before the server is asked (one request for a -R in sshd's log).
    manager = Manager(engine="inline")
    try:
        first = manager.open(
            fresh_sshd.line("-R", f"127.0.0.1:0:127.0.0.1:{here.echo}"), name="share"
        )
        taken = first.forwards[0].listen_port
        asked = fresh_sshd.log.read_text(errors="replace").count("tcpip-forward")
        again = fresh_sshd.line("-R", f"127.0.0.1:{taken}:127.0.0.1:{here.http}")
        with pytest.raises(ForwardError) as info:
            manager.open(again, name=second_name)
        assert f"port {taken}" in str(info.value)
        assert "held by tunnel 'share'" in str(info.value)
        assert manager.tunnels() == [first] and len(first.forwards) == 1
        log = fresh_sshd.log.read_text(errors="replace")
        assert log.count("tcpip-forward") == asked
    finally:
        manager.close()


def test_a_line_run_again_while_its_tunnel_reconnects_is_that_tunnel(
    fresh_sshd: SshServer, targets
) -> None:
    manager = Manager(engine="inline")
    try:
        line = fresh_sshd.line("-L", f"0:{targets.host}:{targets.echo}")
        first = manager.open(line)
        fresh_sshd.stop(hard=True)  # every session killed: the tunnel reconnects
        assert clients.wait_until(lambda: first.state == "reconnecting", 15)
        assert manager.open(line) is first
        assert manager.tunnels() == [first]
    finally:
        manager.close()
