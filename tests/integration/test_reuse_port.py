"""-o ReusePort=yes: several processes of one user listen on one port, each
in its own right (what several Dask workers on one machine do); a process
that did not ask cannot join them."""

from __future__ import annotations

import socket

import pytest
from nbtunnel import ForwardError, Manager

from tests.rig import clients

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(
    not hasattr(socket, "SO_REUSEPORT"),
    reason="no SO_REUSEPORT here (Windows): no port is shared",
)
def test_two_engines_share_a_port_and_one_serves_on_when_the_other_stops(
    sshd, targets
) -> None:
    port = _free_port()
    forward = ["-o", "ReusePort=yes", "-L", f"{port}:{targets.host}:{targets.echo}"]
    first, second, other = Manager(), Manager(), Manager()
    try:
        a = first.open(sshd.line(*forward))
        b = second.open(sshd.line(*forward))
        assert a.forwards[0].listen_port == b.forwards[0].listen_port == port
        for i in range(40):
            payload = f"round {i}".encode()
            assert clients.echo_roundtrip("127.0.0.1", port, payload, 10) == payload
        # The system spread the connections over both engines.
        assert a.forwards[0].stats.connections_total > 0
        assert b.forwards[0].stats.connections_total > 0
        assert (
            a.forwards[0].stats.connections_total
            + b.forwards[0].stats.connections_total
            == 40
        )
        # One that did not ask for it is refused, as any taken port.
        with pytest.raises(ForwardError, match=f"port {port}.*in use"):
            other.open(sshd.line("-L", f"{port}:{targets.host}:{targets.echo}"))
        a.stop()
        for i in range(10):
            payload = f"after {i}".encode()
            assert clients.echo_roundtrip("127.0.0.1", port, payload, 10) == payload
    finally:
        for manager in (first, second, other):
            manager.close()
