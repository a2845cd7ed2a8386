"""OwnerOnly: another Unix user on the same machine gets nothing through
our forwards (nbtunnel/forward/owner.py, nbtunnel/platform/peers.py).

A second user is made for the test (and removed after); its clients run
as that user (``setpriv``) with the system's Python and connect to the
forwards of the engine this test runs as root.  The forwards lead to the
rig's tally target behind the real sshd, which counts every connection it
accepts: a refused client must not add one.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from nbtunnel import Manager
from nbtunnel.client import display
from nbtunnel.platform import peers
from nbtunnel.ui.panel import view

from tests.capabilities import IS_ROOT
from tests.rig import clients
from tests.rig.clients import tally

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not IS_ROOT or not shutil.which("useradd") or not shutil.which("setpriv"),
        reason="needs root, useradd and setpriv to act as a second user",
    ),
    pytest.mark.skipif(
        peers.why_unknown() is not None,
        reason=f"this system cannot tell who connects: {peers.why_unknown()}",
    ),
]

PAYLOAD = b"from the other user\n"

# Run as the other user: connect, say what came back (nothing, a reset, or
# the target's answer).  -D clients send a SOCKS5 greeting and CONNECT.
_CLIENT = r"""
import json, socket, struct, sys
host, port, kind, target_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
source = (sys.argv[5], 0) if len(sys.argv) > 5 else None
got, error = b"", None
try:
    with socket.create_connection((host, port), timeout=5, source_address=source) as s:
        if kind == "close-at-once":  # send, and gone before anyone looks
            s.sendall(b"from the other user\n")
            raise SystemExit(print(json.dumps({"uid": __import__("os").getuid(),
                                               "got": "", "error": None})))
        if kind == "socks":
            s.sendall(b"\x05\x01\x00")
            got = s.recv(2)
            if got == b"\x05\x00":
                s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1")
                          + struct.pack("!H", target_port))
                got += s.recv(10)
        s.sendall(b"from the other user\n")
        s.shutdown(socket.SHUT_WR)
        while data := s.recv(65536):
            got += data
except OSError as exc:
    error = type(exc).__name__
print(json.dumps({"uid": __import__("os").getuid(), "got": got.decode("latin-1"), "error": error}))
"""


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int

    def run(
        self,
        host: str,
        port: int,
        kind: str,
        target_port: int = 0,
        source: str | None = None,
    ) -> Any:
        """One client of ours, run as this user (from ``source``, an address
        of this machine, if given): what it saw."""
        python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
        done = subprocess.run(
            [
                "setpriv",
                f"--reuid={self.uid}",
                f"--regid={self.gid}",
                "--clear-groups",
                python,
                "-c",
                _CLIENT,
                host,
                str(port),
                kind,
                str(target_port),
                *([source] if source else []),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            cwd="/",
            check=True,
        )
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def other_user() -> Iterator[User]:
    name = f"nbt-other-{os.getpid() % 100000}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/bin/false", name],
        check=True,
        capture_output=True,
    )
    try:
        import pwd

        entry = pwd.getpwnam(name)
        yield User(name, entry.pw_uid, entry.pw_gid)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def _owner_round_trip(host: str, port: int) -> str:
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"the owner\n")
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while data := sock.recv(65536):
            got += data
    return got.decode()


def test_another_user_gets_nothing_through_l_and_d(
    other_user: User, process_manager: Manager, sshd, targets
) -> None:
    tally_target = f"{targets.host}:{targets.tally}"
    tunnel = process_manager.open(
        sshd.line(
            *("-L", f"127.0.0.1:0:{tally_target}"),
            *("-L", f"[::1]:0:{tally_target}"),
            *("-D", "127.0.0.1:0"),
        )
    )
    try:
        v4, v6, socks = tunnel.forwards
        counting = v4.listen_port
        assert counting is not None
        before = tally(counting)["accepted"]

        # The other user: reset before the target hears of it, and no
        # SOCKS reply that grants anything.
        for host, forward in (("127.0.0.1", v4), ("::1", v6)):
            seen = other_user.run(host, forward.listen_port, "plain")
            assert seen["uid"] == other_user.uid
            assert seen["got"] == "", seen
        seen = other_user.run("127.0.0.1", socks.listen_port, "socks", targets.tally)
        assert seen["got"] == "", seen
        # Gone before it could be looked up: nobody's, refused all the same.
        other_user.run("127.0.0.1", v4.listen_port, "close-at-once")
        # From this machine's own non-loopback address (still a local user).
        here = sshd.this_machine
        if here is not None:
            seen = other_user.run("127.0.0.1", v4.listen_port, "plain", source=here)
            assert seen["got"] == "", seen
        assert tally(counting)["accepted"] == before

        # The owner, meanwhile, is served on each.
        assert _owner_round_trip("127.0.0.1", v4.listen_port).startswith("10 ")
        assert _owner_round_trip("::1", v6.listen_port).startswith("10 ")
        assert tally(counting)["accepted"] == before + 2

        # Counted, with the uid named, in the stats, the table and the panel.
        # (The one gone at once is counted if it was still there when
        # looked up; either way it reached nothing.)
        refused = {v4: 1 + (here is not None), v6: 1, socks: 1}
        for forward in (v4, v6, socks):
            stats = forward.stats
            counted = stats.connections_refused - refused[forward]
            assert counted in ((0, 1) if forward is v4 else (0,)), stats
            assert f"uid {other_user.uid}" in (stats.last_error or "")
            assert other_user.name in (stats.last_error or "")
        table = display.text_table(process_manager.snapshots())
        assert "(1 refused)" in table, table  # v6 and -D
        snapshot = next(t for t in process_manager.snapshots() if t.id == tunnel.id)
        row = view.row(snapshot, snapshot.forwards[0], view.Rates(), 0.0)
        assert f"{v4.stats.connections_refused} refused" in row.connections
        assert f"uid {other_user.uid}" in row.error
        assert any("connection refused" in line for line in tunnel.events)
    finally:
        tunnel.stop()


def test_owner_only_no_lets_every_local_user_in(
    other_user: User, process_manager: Manager, sshd, targets
) -> None:
    tally_target = f"{targets.host}:{targets.tally}"
    tunnel = process_manager.open(
        sshd.line("-o", "OwnerOnly=no", "-L", f"0:{tally_target}", "-D", "0")
    )
    try:
        local, socks = tunnel.forwards
        seen = other_user.run("127.0.0.1", local.listen_port, "plain")
        assert seen["got"].startswith(f"{len(PAYLOAD)} "), seen
        seen = other_user.run("127.0.0.1", socks.listen_port, "socks", targets.tally)
        assert seen["got"].startswith("\x05\x00"), seen
        assert f"{len(PAYLOAD)} " in seen["got"], seen
        assert local.stats.connections_refused == 0
    finally:
        tunnel.stop()


def test_a_wide_forward_admits_others_unless_owner_only_yes(
    other_user: User, process_manager: Manager, sshd, targets
) -> None:
    # -g means other hosts are meant to connect: OwnerOnly is off there
    # unless asked for, and then only this user's local connections pass.
    here = sshd.this_machine
    if here is None:
        pytest.skip("the rig's server has no network namespace to connect from")
    tally_target = f"{targets.host}:{targets.tally}"
    wide = process_manager.open(sshd.line("-g", "-L", f"0:{tally_target}"))
    strict = process_manager.open(
        sshd.line("-g", "-o", "OwnerOnly=yes", "-L", f"0:{tally_target}")
    )
    try:
        (open_to_all,) = wide.forwards
        (owner_only,) = strict.forwards
        pushed = clients.on_server(sshd, "push", here, open_to_all.listen_port, 1000)
        assert pushed["count"] == 1000
        assert other_user.run("127.0.0.1", open_to_all.listen_port, "plain")["got"]
        assert open_to_all.stats.connections_refused == 0

        port = owner_only.listen_port
        assert _owner_round_trip("127.0.0.1", port).startswith("10 ")
        assert clients.on_server(sshd, "hung-up", here, port) == {"hung_up": True}
        assert other_user.run("127.0.0.1", port, "plain")["got"] == ""
        stats = owner_only.stats
        assert stats.connections_refused == 2, stats
        assert f"uid {other_user.uid}" in (stats.last_error or "")
    finally:
        wide.stop()
        strict.stop()
