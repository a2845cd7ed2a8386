"""Listening sockets: addresses, port 0, bind failures, unix sockets, clean close."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from nbtunnel.errors import ForwardError
from nbtunnel.forward.listener import Listener

from tests.capabilities import (
    IS_ROOT,
    POSIX_MODES,
    UNIX_SOCKETS,
    low_ports_need_privilege,
    short_temp_dir,
)


def _accept_into(accepted: list[socket.socket], ready: threading.Event):
    def on_accept(sock: socket.socket, origin: str) -> None:
        accepted.append(sock)
        ready.set()

    return on_accept


def test_port_zero_binds_loopback_and_reports_the_port() -> None:
    listener = Listener(port=0)
    listener.bind()
    try:
        assert listener.listen_host == "127.0.0.1"
        assert listener.listen_port and listener.listen_port > 0
        # ssh's rule: "localhost" listens on IPv6 loopback too, same port.
        assert set(listener.listen_addresses) <= {"127.0.0.1", "::1"}
        accepted: list[socket.socket] = []
        ready = threading.Event()
        listener.start(_accept_into(accepted, ready))
        with socket.create_connection(("127.0.0.1", listener.listen_port), timeout=5):
            assert ready.wait(5)
    finally:
        listener.close()
        for s in accepted:
            s.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", listener.listen_port), timeout=5).close()


def test_port_in_use_names_address_and_port(taken_port: int) -> None:
    port = taken_port
    listener = Listener(host="127.0.0.1", port=port)
    with pytest.raises(ForwardError) as info:
        listener.bind()
    message = str(info.value)
    assert f"127.0.0.1 port {port}" in message
    assert "already listens there" in message
    listener.close()


def test_loopback_default_fails_whole_when_ipv4_port_is_taken(taken_port: int) -> None:
    listener = Listener(port=taken_port)
    with pytest.raises(ForwardError, match=f"port {taken_port}"):
        listener.bind()
    # Nothing half-open: the IPv6 side is not left listening either.
    assert listener.listen_addresses == ()


@pytest.mark.skipif(
    not low_ports_need_privilege(),
    reason="this user may bind low ports (root, macOS, Windows)",
)
def test_low_port_hint() -> None:
    with pytest.raises(ForwardError, match="only root may listen on ports below 1024"):
        Listener(host="127.0.0.1", port=80).bind()


def test_unknown_bind_address() -> None:
    with pytest.raises(ForwardError, match=r"no-such-host\.invalid"):
        Listener(host="no-such-host.invalid", port=0).bind()


def test_address_not_on_this_machine() -> None:
    with pytest.raises(ForwardError, match=r"192\.0\.2\.123 port 0"):
        Listener(host="192.0.2.123", port=0).bind()


def test_family_restriction() -> None:
    listener = Listener(port=0, family="inet")
    listener.bind()
    try:
        assert listener.listen_addresses == ("127.0.0.1",)
    finally:
        listener.close()


def test_wildcard_binds_every_interface() -> None:
    listener = Listener(host="*", port=0)
    listener.bind()
    try:
        assert listener.listen_host == "0.0.0.0"
    finally:
        listener.close()


def test_gateway_ports_widens_the_default_bind() -> None:
    listener = Listener(port=0, gateway_ports=True)
    listener.bind()
    try:
        assert listener.listen_host == "0.0.0.0"
    finally:
        listener.close()


@pytest.mark.skipif(
    not UNIX_SOCKETS, reason="this system has no unix sockets (AF_UNIX; Windows)"
)
def test_unix_socket_is_private_and_removed_on_close() -> None:
    path = Path(short_temp_dir()) / "fwd.sock"
    listener = Listener(path=str(path))
    listener.bind()
    ready = threading.Event()
    accepted: list[socket.socket] = []
    listener.start(_accept_into(accepted, ready))
    try:
        if POSIX_MODES:
            assert (path.stat().st_mode & 0o777) == 0o600
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))
            assert ready.wait(5)
    finally:
        listener.close()
        for s in accepted:
            s.close()
    assert not path.exists()
    path.parent.rmdir()


@pytest.mark.skipif(
    not (UNIX_SOCKETS and POSIX_MODES),
    reason="this system has no unix sockets or no POSIX modes (Windows)",
)
@pytest.mark.parametrize(
    ("mode", "said"),
    [
        (0o700, None),
        (0o755, None),
        (0o1777, None),  # /tmp's: others may write, not rename what is ours
        (0o777, "other users may write to it (mode 0777)"),
        (0o770, "other users may write to it (mode 0770)"),
        (-0o755, "belongs to another user (mode 0755)"),  # chowned: see below
    ],
)
def test_a_socket_others_could_replace_is_said(mode: int, said: str | None) -> None:
    directory = Path(short_temp_dir())
    path = directory / "fwd.sock"
    if mode < 0:
        if not IS_ROOT:
            directory.rmdir()
            pytest.skip("only root may give a directory to another user")
        os.chown(directory, 4242, 4242)  # a uid nobody here has
        mode = -mode
    directory.chmod(mode)
    listener = Listener(path=str(path))
    listener.bind()
    try:
        assert (path.stat().st_mode & 0o777) == 0o600
        if said is None:
            assert listener.warning is None
        else:
            assert listener.warning == (
                f"the socket's directory {directory} {said}: they could replace "
                "the socket; put it in a directory only you can write to"
            )
    finally:
        listener.close()
        directory.rmdir()


@pytest.mark.skipif(
    not UNIX_SOCKETS, reason="this system has no unix sockets (AF_UNIX; Windows)"
)
def test_existing_unix_socket_path_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "taken"
    path.write_text("x")
    with pytest.raises(ForwardError, match="already exists"):
        Listener(path=str(path)).bind()
    assert path.read_text() == "x"


def test_close_is_idempotent_and_leaves_no_fds() -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        listener = Listener(port=0)
        listener.bind()
        listener.start(lambda s, o: s.close())
        listener.close()
        listener.close()
    assert len(os.listdir("/proc/self/fd")) == before
    assert not [
        t for t in threading.enumerate() if t.name.startswith("nbtunnel-accept")
    ]


def test_error_codes_have_hints() -> None:
    from nbtunnel.forward.listener import _bind_error

    err = _bind_error("::1", 9, OSError(errno.EACCES, "Permission denied"))
    assert "[::1] port 9" in str(err)
    assert "use 0 for any free port" in str(err)


_BOTH_TAKEN = r"""
import socket, subprocess
from nbtunnel.errors import ForwardError
from nbtunnel.forward.listener import Listener
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
# Per network namespace: this one hands out only two ports, and IPv6 holds both.
with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
    f.write("50000 50001")
held = []
for port in (50000, 50001):
    s = socket.socket(socket.AF_INET6)
    s.bind(("::1", port))
    s.listen()
    held.append(s)
try:
    Listener(host=None, port=0).bind()
except ForwardError as exc:
    print("refused:", exc)
# Nothing half-open: IPv4 got each port in turn and gave it back.
for port in (50000, 50001):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))
print("ports free")
"""


@pytest.mark.skipif(
    not IS_ROOT or shutil.which("unshare") is None,
    reason="needs root and unshare(1) for a network namespace with a two-port range",
)
def test_port_zero_gives_up_cleanly_when_the_other_family_holds_every_port() -> None:
    result = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", _BOTH_TAKEN],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert result.returncode == 0, result.stderr
    refused, free = result.stdout.splitlines()
    # IPv4 found no port free of IPv6's owners, or got one whose IPv6 twin
    # was taken on every try: either way a refusal that says so.
    assert refused.startswith("refused: cannot listen on ")
    assert "Address already in use" in refused
    assert "pick another port, or 0" not in refused or "[::1] port 5000" in refused
    assert free == "ports free"
