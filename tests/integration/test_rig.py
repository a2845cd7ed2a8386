"""The rig works on its own: real OpenSSH client -> rig sshd -> rig targets.

No nbtunnel here: if these fail, nbtunnel's integration failures mean nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rig import (
    Netns,
    OpenSshForward,
    Rig,
    SshServer,
    Targets,
    detect_mode,
    echo_roundtrip,
    echo_roundtrip_unix,
    expected_sha256,
    http_get,
    openssh_forward,
    pattern,
    procs,
    rig_links,
    rig_namespaces,
    sink_upload,
    source_download,
    start_rig,
    sweep_stale,
    wait_until,
)
from tests.rig.data import BLOCK, chunks
from tests.rig.netns import MODE_ENV, NETNS_SKIP_REASON, Mode

pytestmark = pytest.mark.integration

MiB = 1 << 20
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fwd(sshd: SshServer, targets: Targets) -> Iterator[OpenSshForward]:
    """One ssh -N with a forward to each target: echo, sink, source, http, unix."""
    with openssh_forward(
        sshd,
        [
            f"{targets.host}:{targets.echo}",
            f"{targets.host}:{targets.sink}",
            f"{targets.host}:{targets.source}",
            f"{targets.host}:{targets.http}",
            str(targets.unix_echo),
            f"{targets.host}:{targets.refused_port}",
        ],
    ) as f:
        yield f


def test_echo_1mib_unchanged(fwd: OpenSshForward) -> None:
    data = pattern(MiB + 17)
    assert echo_roundtrip("127.0.0.1", fwd.ports[0], data) == data


def test_echo_empty_half_close(fwd: OpenSshForward) -> None:
    # Nothing sent, only EOF: the EOF must come back through the tunnel.
    assert echo_roundtrip("127.0.0.1", fwd.ports[0], b"", timeout=10) == b""


def test_sink_8mib(fwd: OpenSshForward) -> None:
    n = 8 * MiB + 3
    assert sink_upload("127.0.0.1", fwd.ports[1], n) == (n, expected_sha256(n))


def test_source_download(fwd: OpenSshForward) -> None:
    for n in (0, 1, 5 * MiB + 1):
        assert source_download("127.0.0.1", fwd.ports[2], n) == (
            n,
            expected_sha256(n),
        )


def test_http_get(fwd: OpenSshForward) -> None:
    assert http_get("127.0.0.1", fwd.ports[3], "/") == (200, b"nbtunnel rig\n")
    status, body = http_get("127.0.0.1", fwd.ports[3], f"/bytes/{MiB + 5}")
    assert status == 200
    assert body == pattern(MiB + 5)
    assert http_get("127.0.0.1", fwd.ports[3], "/nope")[0] == 404


def test_unix_echo_through_forward(fwd: OpenSshForward) -> None:
    data = pattern(300_000)
    assert echo_roundtrip("127.0.0.1", fwd.ports[4], data) == data


def test_refused_port_ends_the_forwarded_connection(fwd: OpenSshForward) -> None:
    # ssh accepts locally, sshd's connect is refused, ssh closes our side.
    with (
        socket.create_connection(("127.0.0.1", fwd.ports[5]), timeout=5) as s,
        contextlib.suppress(ConnectionResetError),
    ):
        assert s.recv(1) == b""


def test_echo6(sshd: SshServer, targets: Targets) -> None:
    if targets.echo6 is None:
        pytest.skip("no IPv6 loopback where the targets run")
    with openssh_forward(sshd, [f"[::1]:{targets.echo6}"]) as f:
        assert echo_roundtrip("127.0.0.1", f.ports[0], b"six" * 1000) == b"six" * 1000


def test_echo_holds_1200_concurrent_connections(
    sshd: SshServer, targets: Targets
) -> None:
    # Run the client where the targets are (inside the namespace in netns mode).
    n = 1200
    code = (
        "import sys; from tests.rig.clients import echo_many; "
        "print(echo_many(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))"
    )
    r = subprocess.run(
        sshd.ns_argv(
            [sys.executable, "-c", code, targets.host, str(targets.echo), str(n)]
        ),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == [str(n)]


def test_data_pattern() -> None:
    assert len(pattern(BLOCK * 3 + 5)) == BLOCK * 3 + 5
    assert pattern(1000) == pattern(BLOCK + 1)[:1000]
    blocks = list(chunks(BLOCK * 4))
    assert len(set(blocks)) == 4  # position-dependent: reordering is detected
    assert expected_sha256(0) == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_direct_access_matches_mode(
    rig_mode: str, sshd: SshServer, targets: Targets
) -> None:
    assert rig_mode == detect_mode().mode
    if os.environ.get(MODE_ENV) == "loopback":
        assert rig_mode == "loopback"
    if rig_mode == "loopback":
        assert sshd.host == "127.0.0.1"
        assert sshd.netns is None and sshd.host6 is None
        # same namespace as the test: the targets are right here
        assert echo_roundtrip(targets.host, targets.echo, b"hi", timeout=5) == b"hi"
        assert echo_roundtrip_unix(targets.unix_echo, b"hi", timeout=5) == b"hi"
    else:
        assert sshd.netns is not None and sshd.host6 is not None
        assert sshd.host.startswith("10.177.")


def _echoes_here(port: int) -> bool:
    token = b"nbtunnel-rig-probe\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(1)
            s.sendall(token)
            return s.recv(100) == token
    except OSError:  # refused, reset, timed out: not our echo
        return False


@pytest.mark.netns
def test_targets_reachable_only_through_sshd(
    sshd: SshServer, targets: Targets, isolated: Netns
) -> None:
    me = os.readlink("/proc/self/ns/net")
    assert os.readlink(f"/proc/{targets.pid}/ns/net") != me
    assert os.readlink(f"/proc/{sshd.pid}/ns/net") != me
    listening = sshd.exec_in_ns(["ss", "-Hltn"]).stdout
    for port in (targets.echo, targets.sink, targets.source, targets.http):
        assert f"127.0.0.1:{port} " in listening
        # In our namespace that port is closed, or (rarely) someone else's:
        # either way it must not be our echo talking back.
        assert not _echoes_here(port)


def test_silent_addr_times_out(isolated: Netns) -> None:
    # routed into the rig's veth, owned by nobody: a connect-timeout target
    with pytest.raises(TimeoutError):
        socket.create_connection((isolated.silent_addr, 22), timeout=0.3).close()


@pytest.mark.netns
def test_sshd_on_ipv6(sshd: SshServer, targets: Targets) -> None:
    assert sshd.host6 is not None
    with openssh_forward(
        sshd, [f"{targets.host}:{targets.echo}"], host=sshd.host6
    ) as f:
        assert echo_roundtrip("127.0.0.1", f.ports[0], b"v6" * 5000) == b"v6" * 5000


def test_session_pids_follow_the_client(
    fresh_sshd: SshServer, targets: Targets
) -> None:
    assert fresh_sshd.session_pids() == []
    with openssh_forward(fresh_sshd, [f"{targets.host}:{targets.echo}"]) as f:
        sessions = wait_until(fresh_sshd.session_pids, 5)
        assert echo_roundtrip("127.0.0.1", f.ports[0], b"x") == b"x"
        os.kill(f.pid, signal.SIGKILL)
        f.proc.wait()
        wait_until(lambda: not fresh_sshd.session_pids(), 5, message="session gone")
    assert not any(procs.exists(p) for p in sessions)  # reaped, not zombies


def test_restart_same_port_new_pid(fresh_sshd: SshServer, targets: Targets) -> None:
    port, pid = fresh_sshd.port, fresh_sshd.pid
    with openssh_forward(fresh_sshd, [f"{targets.host}:{targets.echo}"]) as f:
        sessions = wait_until(fresh_sshd.session_pids, 5)
        fresh_sshd.restart()
        # the client sees the server vanish
        assert f.proc.wait(timeout=10) == 255
    assert fresh_sshd.port == port and fresh_sshd.pid != pid
    assert not procs.exists(pid) and not any(procs.exists(p) for p in sessions)
    with openssh_forward(fresh_sshd, [f"{targets.host}:{targets.echo}"]) as f:
        assert echo_roundtrip("127.0.0.1", f.ports[0], b"again") == b"again"


def test_config_and_known_hosts(sshd: SshServer) -> None:
    cfg = sshd.config.read_text()
    for line in (
        "UsePAM no",
        "PasswordAuthentication no",
        "AllowTcpForwarding yes",
        "AllowStreamLocalForwarding yes",
        "GatewayPorts clientspecified",
        f"AuthorizedKeysFile {sshd.workdir}/authorized_keys",
        f"Port {sshd.port}",
    ):
        assert line + "\n" in cfg
    assert "/etc/ssh" not in cfg
    key = " ".join(sshd.host_key_pub.read_text().split()[:2])
    assert f"[{sshd.host}]:{sshd.port}" in sshd.known_hosts.read_text()
    assert sshd.known_hosts.read_text().rstrip().endswith(key)
    tokens = sshd.line("-L", "0:127.0.0.1:7").split()
    assert tokens[:4] == ["-p", str(sshd.port), "-i", str(sshd.client_key)]
    assert tokens[-3:] == ["-L", "0:127.0.0.1:7", sshd.destination]
    assert sshd.log.exists()


def _modes() -> list[object]:
    netns_ok = os.geteuid() == 0 and detect_mode().mode == "netns"
    return [
        pytest.param(
            "netns",
            marks=pytest.mark.skipif(not netns_ok, reason=NETNS_SKIP_REASON),
        ),
        "loopback",
    ]


@pytest.mark.parametrize("mode", _modes())
def test_teardown_leaves_nothing(mode: Mode, targets: Targets) -> None:
    rig = start_rig(mode)
    ns = rig.netns
    dirs = [rig.sshd.workdir, rig.targets.workdir]
    pids = [rig.sshd.pid, rig.targets.pid]
    try:
        with openssh_forward(rig.sshd, [f"{rig.targets.host}:{rig.targets.echo}"]) as f:
            assert echo_roundtrip("127.0.0.1", f.ports[0], b"bye") == b"bye"
            pids += wait_until(rig.sshd.session_pids, 5)
            # torn down while a client is still connected
            rig.close()
            assert f.proc.wait(timeout=10) == 255
    finally:
        rig.close()  # idempotent; here for the failure paths
    assert not any(procs.exists(p) for p in pids), pids
    assert not any(d.exists() for d in dirs)
    if ns is not None:
        assert ns.name not in rig_namespaces(os.getpid())
        assert ns.host_if not in rig_links(os.getpid())
    # the session rig is untouched
    assert procs.is_alive(targets.pid)


@pytest.mark.netns
def test_sweep_removes_stale_state() -> None:
    # A rig "left behind" by a process that is gone: a fresh, already reaped PID.
    dead = subprocess.Popen(["true"])
    dead.wait()
    ns = Netns(owner=dead.pid).create()
    stale_dir = Path(tempfile.gettempdir()) / f"nbt-rig-{dead.pid}-sshd-stale"
    stale_dir.mkdir()
    sleeper = subprocess.Popen(ns.exec_argv(["sleep", "60"]))
    try:
        assert ns.name in rig_namespaces(dead.pid)
        removed = sweep_stale()
        assert f"netns {ns.name}" in removed
        assert sleeper.wait(timeout=5) == -signal.SIGKILL
        assert ns.name not in rig_namespaces()
        assert ns.host_if not in rig_links()
        assert not stale_dir.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
        ns.destroy()
        if stale_dir.exists():
            stale_dir.rmdir()


def test_second_sshd_beside_the_first(
    rig: Rig, sshd: SshServer, targets: Targets
) -> None:
    with rig.new_sshd() as other:
        assert other.port != sshd.port and other.netns == sshd.netns
        with openssh_forward(other, [f"{targets.host}:{targets.sink}"]) as f:
            assert sink_upload("127.0.0.1", f.ports[0], 1000) == (
                1000,
                expected_sha256(1000),
            )
    assert not procs.exists(other.pid)


@pytest.mark.skipif(
    os.environ.get(MODE_ENV) == "loopback", reason="already the loopback run"
)
def test_loopback_mode_subprocess_run() -> None:
    """The same rig, forced into loopback mode, in a separate pytest run."""
    selected = [
        "test_echo_1mib_unchanged",
        "test_sink_8mib",
        "test_http_get",
        "test_unix_echo_through_forward",
        "test_direct_access_matches_mode",
        "test_targets_reachable_only_through_sshd",
        "test_session_pids_follow_the_client",
    ]
    env = dict(os.environ, **{MODE_ENV: "loopback"})
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            *(f"{__file__}::{name}" for name in selected),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "6 passed, 1 skipped" in out, out[-4000:]
    assert NETNS_SKIP_REASON in out, out[-4000:]
