"""A -R connection that arrives when the engine can start no thread (a pids
cgroup, systemd's TasksMax, a container's limit), against the rig's real sshd.

The engine runs in a pids cgroup of its own capped at the tasks it has: the
thread for the incoming channel cannot start.  That one connection is closed
and counted on its forward; the SSH connection, the tunnel and the forward go
on, and serve the next connection once the pressure ends.  (Raised in
paramiko's transport thread, the RuntimeError used to end the SSH connection
and with it every forward of the tunnel.)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from nbtunnel import Manager

from tests.rig import clients
from tests.rig.sshd import SshServer

pytestmark = pytest.mark.integration

_V1 = Path("/sys/fs/cgroup/pids")
_V2 = Path("/sys/fs/cgroup")


def _pids_hierarchy() -> Path | None:
    """Where this machine's pids controller can be given a new group, if it can."""
    if os.geteuid() != 0:
        return None
    if (_V1 / "cgroup.procs").is_file():
        return _V1
    controls = _V2 / "cgroup.subtree_control"
    if controls.is_file() and "pids" in controls.read_text().split():
        return _V2
    return None


def _group_of(pid: int, root: Path) -> Path:
    """The pids cgroup ``pid`` is in now, under ``root``."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if ("pids" in controllers.split(",")) == (root == _V1):
            return root / path.lstrip("/")
    return root


@contextlib.contextmanager
def _no_new_threads(pid: int) -> Iterator[None]:
    """``pid`` in a pids cgroup of its own that allows no more tasks than it
    has: every thread.start() in it fails with "can't start new thread"."""
    root = _pids_hierarchy()
    if root is None:
        pytest.skip("needs root and a pids cgroup controller (v1, or v2 delegated)")
    home = _group_of(pid, root)
    group = root / f"nbtunnel-test-{os.getpid()}-{pid}"
    group.mkdir()
    try:
        (group / "cgroup.procs").write_text(f"{pid}\n")
        tasks = int((group / "pids.current").read_text())
        (group / "pids.max").write_text(f"{tasks}\n")
        yield
    finally:
        (group / "pids.max").write_text("max\n")
        (home / "cgroup.procs").write_text(f"{pid}\n")
        group.rmdir()


def test_no_thread_for_a_remote_connection_ends_that_one_only(
    sshd: SshServer, here
) -> None:
    manager = Manager(engine="process")
    try:
        line = sshd.line("-R", f"127.0.0.1:0:127.0.0.1:{here.echo}")
        with manager.open(line) as t:
            (remote,) = t.forwards
            port = remote.listen_port
            assert clients.on_server(sshd, "echo", "127.0.0.1", port, 1000)["ok"]
            pid = manager.engine_pid
            assert pid is not None and pid != os.getpid()
            with _no_new_threads(pid):
                # Accepted by the server, then closed without a byte: the
                # engine could not serve it.
                reply = clients.on_server(sshd, "hung-up", "127.0.0.1", port)
                assert reply["hung_up"]
            stats = remote.stats
            assert stats.connections_failed == 1, stats
            assert "could not start a thread for this connection" in str(
                stats.last_error
            )
            assert "can't start new thread" in str(stats.last_error)
            # Nothing else was touched: no reconnect, the same port, served.
            assert t.state == "up" and remote.state == "up"
            assert remote.listen_port == port
            events = "\n".join(t.events)
            assert "reconnect" not in events
            assert "connection failed: could not start a thread" in events
            size = 1_000_000
            assert clients.on_server(sshd, "echo", "127.0.0.1", port, size)["ok"]
    finally:
        manager.close()
