"""The embedded SSH server (nbtunnel.testing): nbtunnel and OpenSSH's ssh through it.

No sshd here: the server runs in the test process, on loopback, and the
targets are the rig's loopback targets (``here``).  OpenSSH's client
checks that the server speaks SSH as OpenSSH expects, not as nbtunnel does;
like the rest of the suite, it is a set-up requirement (missing: the test
fails), not a reason to skip.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nbtunnel import AuthenticationError, ForwardError, Manager
from nbtunnel.testing import EmbeddedServer, PrivateService
from nbtunnel.testing.clients import get
from nbtunnel.testing.keys import new_key
from nbtunnel.testing.services import payload_sha256

from tests.rig import clients
from tests.rig.data import pattern
from tests.rig.launcher import Targets
from tests.rig.sshd import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def server() -> Iterator[EmbeddedServer]:
    with EmbeddedServer() as s:
        yield s


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("nbtunnel-")}


def test_local_remote_and_dynamic_forwards_carry_data_unchanged(
    server: EmbeddedServer, manager: Manager, here: Targets
) -> None:
    n = 8 << 20
    t = manager.open(
        server.line(
            "-L",
            f"0:localhost:{here.echo}",
            "-R",
            f"0:127.0.0.1:{here.echo}",
            "-D",
            "0",
            "-L",
            f"0:127.0.0.1:{here.sink}",
        )
    )
    local, remote, dynamic, sink = t.forwards
    data = pattern(n)
    assert clients.echo_roundtrip("127.0.0.1", local.listen_port, data) == data
    # The -R port is on the embedded server's side, which is this machine.
    assert clients.echo_roundtrip("127.0.0.1", remote.listen_port, data) == data
    got = clients.socks_echo(dynamic.listen_port, "localhost", here.echo, data)
    assert got == data
    count, digest = clients.sink_upload("127.0.0.1", sink.listen_port, n)
    assert (count, digest) == (n, hashlib.sha256(data).hexdigest())
    assert server.logins == 1
    stats = server.counters.snapshot()
    assert stats.bytes_to_target >= 3 * n + n  # echo x3 and the upload
    t.stop()
    assert clients.port_is_closed("127.0.0.1", remote.listen_port)


def test_unix_sockets_on_the_server_side_both_ways(
    server: EmbeddedServer, manager: Manager, here: Targets, tmp_path: Path
) -> None:
    served = tmp_path / "served.sock"
    t = manager.open(
        server.line(
            "-L", f"0:{here.unix_echo}", "-R", f"{served}:127.0.0.1:{here.echo}"
        )
    )
    data = pattern(1 << 20)
    assert clients.echo_roundtrip("127.0.0.1", t.forwards[0].listen_port, data) == data
    assert clients.echo_roundtrip_unix(served, data) == data
    t.forwards[1].stop()
    assert clients.wait_until(lambda: not served.exists(), 5)


def test_a_web_page_and_a_checked_download_through_the_service(
    server: EmbeddedServer, manager: Manager
) -> None:
    with PrivateService() as service:
        t = manager.open(server.line("-L", f"0:localhost:{service.port}"))
        port = t.forwards[0].listen_port
        page = get("127.0.0.1", port, "/")
        assert page.status == 200 and b"Hello from the private service" in page.head
        size = 5 << 20
        bulk = get("127.0.0.1", port, f"/bytes/{size}")
        assert (bulk.size, bulk.sha256) == (size, payload_sha256(size))
        assert get("127.0.0.1", port, "/nothing").status == 404


def test_targets_other_than_loopback_are_refused_per_connection(
    server: EmbeddedServer, manager: Manager, here: Targets
) -> None:
    # 192.0.2.0/24 is TEST-NET-1: never a real host, and never tried.
    t = manager.open(
        server.line("-L", "0:192.0.2.1:80", "-L", f"0:127.0.0.1:{here.echo}")
    )
    with socket.create_connection(("127.0.0.1", t.forwards[0].listen_port), 10) as s:
        s.settimeout(10)
        assert s.recv(1) == b""  # closed, not hung
    assert clients.wait_until(lambda: t.forwards[0].stats.last_error is not None, 5)
    assert "prohibited" in (t.forwards[0].stats.last_error or "").lower()
    assert t.state == "up"
    port = t.forwards[1].listen_port
    assert (
        clients.echo_roundtrip("127.0.0.1", port, b"still serving") == b"still serving"
    )


def test_it_listens_for_remote_forwards_on_loopback_only(
    server: EmbeddedServer, manager: Manager, here: Targets
) -> None:
    with pytest.raises(ForwardError, match=r"192\.0\.2\.1"):
        manager.open(server.line("-R", f"192.0.2.1:0:127.0.0.1:{here.echo}"))
    # A wildcard is narrowed to loopback, as sshd's GatewayPorts no does.
    t = manager.open(server.line("-R", f"*:0:127.0.0.1:{here.echo}"))
    port = t.forwards[0].listen_port
    assert clients.echo_roundtrip("127.0.0.1", port, b"narrowed") == b"narrowed"
    addresses = {
        line.split()[3]
        for line in subprocess.run(
            ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True
        ).stdout.splitlines()
    }
    assert addresses == {f"127.0.0.1:{port}"}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.com", ""])
def test_the_server_refuses_to_listen_beyond_loopback(host: str) -> None:
    with pytest.raises(ValueError, match="loopback only"):
        EmbeddedServer(host)


def test_a_bad_port_is_refused() -> None:
    with pytest.raises(ValueError, match="70000"):
        EmbeddedServer(port=70000)


def test_a_port_in_use_fails_start_and_leaves_no_files() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = EmbeddedServer(port=taken.getsockname()[1])
        with pytest.raises(OSError):
            server.start()
    assert server._tmp is None


def test_only_its_own_key_logs_in(
    server: EmbeddedServer, manager: Manager, tmp_path: Path, here: Targets
) -> None:
    other = tmp_path / "other_key"
    new_key(other, "someone else")
    line = server.line("-L", f"0:127.0.0.1:{here.echo}")
    line = line.replace(str(server.key_path), str(other))
    with pytest.raises(AuthenticationError, match="refused"):
        manager.open(line)
    with pytest.raises(AuthenticationError):
        manager.open(
            server.line("-L", f"0:127.0.0.1:{here.echo}").replace("demo@", "root@")
        )
    assert server.logins == 0


def test_stop_leaves_no_thread_port_file_or_fd(here: Targets) -> None:
    fds = len(os.listdir("/proc/self/fd"))
    before = _threads()
    manager = Manager(engine="inline")
    server = EmbeddedServer().start()
    directory = server.key_path.parent
    port = server.port
    t = manager.open(
        server.line("-L", f"0:127.0.0.1:{here.echo}", "-R", f"0:127.0.0.1:{here.echo}")
    )
    remote = t.forwards[1].listen_port
    # A connection still open through each when everything stops.
    held = [
        socket.create_connection(("127.0.0.1", t.forwards[0].listen_port)),
        socket.create_connection(("127.0.0.1", remote)),
    ]
    for s in held:
        s.sendall(b"x")
        assert s.recv(1) == b"x"
    server.stop()
    manager.close()
    for s in held:
        s.close()
    assert clients.port_is_closed("127.0.0.1", port)
    assert clients.port_is_closed("127.0.0.1", remote)
    assert not directory.exists()
    assert clients.wait_until(lambda: _threads() <= before, 5), _threads() - before
    assert clients.wait_until(lambda: len(os.listdir("/proc/self/fd")) <= fds, 5)
    server.stop()  # twice is fine


def test_openssh_client_forwards_through_it(
    server: EmbeddedServer, here: Targets
) -> None:
    local, dynamic = free_port(), free_port()
    command = server.ssh_command(
        "-L",
        f"{local}:localhost:{here.echo}",
        "-D",
        str(dynamic),
        "-R",
        f"0:127.0.0.1:{here.echo}",
        "-o",
        "BatchMode=yes",
        "-o",
        "ExitOnForwardFailure=yes",
    )
    ssh = subprocess.Popen(
        shlex.split(command),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HOME": str(server.key_path.parent)},
    )
    try:
        assert ssh.stderr is not None
        allocated = ssh.stderr.readline()  # "Allocated port N for remote forward ..."
        found = re.search(r"Allocated port (\d+)", allocated)
        assert found, allocated
        data = pattern(1 << 20)
        assert clients.wait_until(
            lambda: not clients.port_is_closed("127.0.0.1", local), 10
        )
        assert clients.echo_roundtrip("127.0.0.1", local, data) == data
        assert clients.socks_echo(dynamic, "localhost", here.echo, data) == data
        assert clients.echo_roundtrip("127.0.0.1", int(found.group(1)), data) == data
        assert server.logins == 1
    finally:
        ssh.terminate()
        ssh.wait(10)
        ssh.stderr.close()


def test_it_serves_no_shell(server: EmbeddedServer) -> None:
    command = server.ssh_command("-o", "BatchMode=yes").replace(" -N ", " ")
    done = subprocess.run(
        [*shlex.split(command), "true"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "HOME": str(server.key_path.parent)},
    )
    assert done.returncode != 0
    assert "prohibited" in done.stderr


def test_a_client_that_never_logs_in_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nbtunnel.testing import server as server_module

    monkeypatch.setattr(server_module, "LOGIN_TIMEOUT", 1.0)
    with EmbeddedServer() as server:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), 10) as s:
            s.settimeout(10)
            s.sendall(b"SSH-2.0-silent\r\n")
            while s.recv(65536):
                pass  # the server's banner and key exchange, then its close
        assert time.monotonic() - started < 8


def test_a_client_gone_mid_answer_prints_no_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    # The demo stopped by a signal mid-download: socketserver would print
    # a traceback of the broken pipe into the demo's output.
    import struct

    from nbtunnel.testing.services import PrivateService

    service = PrivateService()
    try:
        for _ in range(3):
            client = socket.create_connection(("127.0.0.1", service.port))
            client.sendall(b"GET /bytes/1000000000 HTTP/1.0\r\n\r\n")
            assert client.recv(65536)
            # Reset, not a polite close: the service's next write fails.
            client.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            client.close()
        time.sleep(1.0)  # its threads meet the reset
    finally:
        service.stop()
    assert "Traceback" not in capfd.readouterr().err
