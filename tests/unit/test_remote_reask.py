"""A -R the server refuses after a reconnect: asked again with the reconnect
back-off until granted, stopped or given up (RemoteForward's retry), and how
the rules and event lines treat such a forward.

The server here is a stand-in that refuses while its port is "held", so that
each interleaving (a stop during the wait, a stop while a request is in
flight, a second reconnect meanwhile) can be made to happen; the real thing
is tests/integration/test_remote_reclaim.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

import pytest
from nbtunnel import ConnectError, ForwardError, parse
from nbtunnel.client import rules
from nbtunnel.client.display import event_line
from nbtunnel.engine.pool import Pool
from nbtunnel.engine.reconnect import Reconnector, backoff
from nbtunnel.forward.remote import RemoteForward
from nbtunnel.grammar.forwards import parse_forward
from nbtunnel.settings.resolve import resolve
from nbtunnel.status import TunnelSnapshot

from .snapshots import forward_snapshot

PORT = 9000


@dataclass(frozen=True)
class _Listening:
    address: str
    port: int | None


class _Server:
    """Refuses the port while ``held``; ``gate``, when set, holds each request
    until it is set (a request in flight)."""

    def __init__(self) -> None:
        self.held = False
        self.asked = 0
        self.cancelled: list[tuple[str, int | None]] = []
        self.gate: threading.Event | None = None
        self.in_flight = threading.Event()
        self.dead = False  # the connection is lost: requests fail

    def listen_remote(
        self, address: str, port: int | None, handler: Any, refused: Any = None
    ) -> _Listening:
        self.asked += 1
        if self.dead:
            raise ConnectError("the SSH connection is closed")
        if self.gate is not None:
            self.in_flight.set()
            self.gate.wait(10)
        if self.held:
            raise ForwardError(f"the server refused to listen on {address}:{port} (-R)")
        return _Listening(address, port)

    def cancel_remote(self, address: str, port: int | None) -> None:
        self.cancelled.append((address, port))


class _Events:
    """The forward's event sink, keeping what it was told."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, kind: str, **data: Any) -> None:
        self.seen.append((kind, data))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.seen]


def _forward(
    server: _Server, events: _Events, retry: Any = lambda n: backoff(n, 0)
) -> RemoteForward:
    spec = parse_forward("-R", f"127.0.0.1:{PORT}:127.0.0.1:80")
    forward = RemoteForward(0, spec, server, emit=events, retry=retry)
    _made.append(forward)
    forward.start()
    return forward


def _after_a_reconnect(forward: RemoteForward, server: _Server) -> None:
    """The connection dropped, the old session holds the port, the tunnel restores."""
    forward.connection_lost("gone")
    server.held = True
    forward.restore()


@pytest.fixture(autouse=True)
def _no_asker_left() -> Iterator[None]:
    """Each test stops what it made; one that failed half-way stops it here."""
    yield
    for forward in _made:
        forward.stop()
    _made.clear()
    assert not _reaskers()


_made: list[RemoteForward] = []


def _reaskers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("nbtunnel-reask")]


def _wait(predicate: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not met in time"
        time.sleep(0.005)


def test_a_refused_port_is_asked_for_again_until_granted() -> None:
    server, events = _Server(), _Events()
    forward = _forward(server, events)  # waits 0.125-0.25 s between tries
    _after_a_reconnect(forward, server)
    assert forward.state == "reconnecting"
    assert f"still holds 127.0.0.1:{PORT}" in str(forward.error)
    assert "asking again until it lets go (refused 1 time," in str(forward.error)
    assert events.kinds() == ["forward_waiting"]
    _wait(lambda: "refused 3 times" in str(forward.error))
    assert forward.state == "reconnecting"
    server.held = False
    _wait(lambda: forward.state == "up")
    assert forward.error is None and forward.listen_port == PORT
    assert events.kinds() == ["forward_waiting", "forward_restored"]
    restored = events.seen[-1][1]
    assert restored["port"] == PORT and restored["tries"] == server.asked - 1
    _wait(lambda: not _reaskers())
    forward.stop()
    assert server.cancelled == [("127.0.0.1", PORT)]


def test_the_waits_are_the_reconnect_back_off() -> None:
    server, events = _Server(), _Events()
    waits: list[int] = []

    def retry(refusals: int) -> float:
        waits.append(refusals)
        return 0.01

    forward = _forward(server, events, retry)
    _after_a_reconnect(forward, server)
    _wait(lambda: len(waits) >= 5)
    server.held = False
    _wait(lambda: forward.state == "up")
    assert waits[:5] == [1, 2, 3, 4, 5]  # each refusal counted once
    forward.stop()


def test_the_tunnels_retry_wait_is_its_back_off_and_attempts() -> None:
    line = "-F none -o ReconnectMaxDelay=2 -o ReconnectAttempts=4 -R 1:h:2 host"
    reconnector = Reconnector(
        Pool(),
        resolve(parse(line), home="/nonexistent"),
        name="test",
        restore=lambda c, n: None,
        fail=lambda why: None,
        event=lambda *a, **k: None,
    )
    # 0.25 s doubling, capped at ReconnectMaxDelay, half of it random.
    first = [reconnector.retry_wait(1) for _ in range(50)]
    assert all(w is not None and 0.25 <= w <= 0.5 for w in first)
    third = [reconnector.retry_wait(3) for _ in range(50)]
    assert all(w is not None and 1 <= w <= 2 for w in third)
    assert reconnector.retry_wait(4) is None


def test_stopping_during_the_wait_ends_the_asking_at_once() -> None:
    server, events = _Server(), _Events()
    forward = _forward(server, events, retry=lambda n: 30.0)
    _after_a_reconnect(forward, server)
    assert len(_reaskers()) == 1
    started = time.monotonic()
    forward.stop()
    assert time.monotonic() - started < 0.5
    assert not _reaskers() and forward.state == "stopped"
    assert server.asked == 2 and server.cancelled == []


def test_a_grant_that_arrives_after_the_stop_is_cancelled() -> None:
    server, events = _Server(), _Events()
    forward = _forward(server, events, retry=lambda n: 0.01)
    _after_a_reconnect(forward, server)
    server.gate, server.held = threading.Event(), False
    assert server.in_flight.wait(5)  # the retry thread asks, the server is slow
    stopping = threading.Thread(target=forward.stop)
    stopping.start()
    time.sleep(0.05)
    server.gate.set()  # granted, but the forward is stopping by now
    stopping.join(5)
    assert not stopping.is_alive() and forward.state == "stopped"
    assert server.cancelled == [("127.0.0.1", PORT)]
    assert "forward_restored" not in events.kinds()


def test_a_second_reconnect_while_asking_starts_no_second_asker() -> None:
    server, events = _Server(), _Events()
    forward = _forward(server, events, retry=lambda n: 0.3)
    _after_a_reconnect(forward, server)
    (asker,) = _reaskers()
    _after_a_reconnect(forward, server)  # lost again, restored again: refused
    assert _reaskers() == [asker]
    assert events.kinds() == ["forward_waiting"]
    server.held = False
    forward.connection_lost("gone again")
    forward.restore()  # this time the reconnect itself gets the port
    assert forward.state == "up"
    assert events.kinds() == ["forward_waiting", "forward_restored"]
    asker.join(2)
    assert not asker.is_alive()
    forward.stop()


def test_the_asking_gives_up_after_the_attempts() -> None:
    server, events = _Server(), _Events()
    forward = _forward(server, events, retry=lambda n: None if n >= 3 else 0.01)
    _after_a_reconnect(forward, server)
    _wait(lambda: forward.state == "failed")
    assert "asked 3 times" in str(forward.error)
    assert "ReconnectAttempts" in str(forward.error)
    assert events.kinds() == ["forward_waiting", "forward_failed"]
    _wait(lambda: not _reaskers())
    forward.stop()
    assert forward.state == "failed"


def test_without_retry_or_at_the_first_start_a_refusal_fails_at_once() -> None:
    server, events = _Server(), _Events()
    forward = _forward(server, events, retry=None)
    forward.connection_lost("gone")
    server.held = True
    with pytest.raises(ForwardError, match="refused to listen"):
        forward.restore()
    assert forward.state == "failed" and not _reaskers()
    spec = parse_forward("-R", f"127.0.0.1:{PORT}:127.0.0.1:80")
    first = RemoteForward(1, spec, server, emit=events, retry=lambda n: 0.01)
    with pytest.raises(ForwardError, match="refused to listen"):
        first.start()
    assert not _reaskers() and server.asked == 3


def test_a_lost_connection_while_asking_keeps_the_asker_waiting() -> None:
    """The link refuses with ConnectError while the tunnel reconnects: no give-up."""
    server, events = _Server(), _Events()
    forward = _forward(server, events, retry=lambda n: None if n >= 3 else 0.01)
    _after_a_reconnect(forward, server)
    listen = server.listen_remote

    def down(*args: Any) -> Any:
        server.asked += 1
        raise ConnectError("the SSH connection to u@h is down")

    server.listen_remote = down  # type: ignore[method-assign]
    asked = server.asked
    _wait(lambda: server.asked >= asked + 5)
    assert forward.state == "reconnecting"  # outages are not refusals
    server.listen_remote = listen  # type: ignore[method-assign]
    server.held = False
    _wait(lambda: forward.state == "up")
    forward.stop()


def test_a_reconnecting_forward_can_be_cancelled_with_k() -> None:
    spec = parse(f"-R 127.0.0.1:{PORT}:localhost:80 u@h")
    forward = replace(
        forward_snapshot(str(spec.forwards[0]), "reconnecting"),
        listen_host="127.0.0.1",
        listen_port=PORT,
        kind="remote",
    )
    snap = TunnelSnapshot(
        id=1, destination="u@h", state="up", error=None, forwards=(forward,), name="h"
    )
    handle = SimpleNamespace(spec=spec, name="h")
    live: Any = [(handle, snap)]
    assert rules.to_cancel(live, "-KR", str(PORT)) == (handle, 0)
    # ... and it still holds its port against a second line asking for it.
    with pytest.raises(ForwardError, match="held by tunnel 'h'"):
        rules.check_ports(spec.forwards, spec, live)


def test_the_asking_events_read_as_sentences() -> None:
    server, events = _Server(), _Events()
    forward = _forward(server, events)
    _after_a_reconnect(forward, server)
    # The forward names itself by its spec, as the tables do.
    kind, data = events.seen[-1]
    assert kind == "forward_waiting" and data["forward"] == 0
    spec = forward.snapshot().spec
    assert data["spec"] == spec == f"-R 127.0.0.1:{PORT}:127.0.0.1:80"
    waiting = {"event": kind, **data}
    assert event_line(waiting) == f"forward {spec} waiting: {data['error']}"
    restored = {
        "event": "forward_restored",
        "forward": 0,
        "spec": spec,
        "port": 9000,
        "tries": 6,
        "seconds": 14.26,
    }
    assert event_line(restored) == (
        f"forward {spec} back on port 9000 after 14.3 s (6 tries)"
    )
    # An event that carries no spec still says which forward, by index.
    del restored["spec"]
    assert str(event_line(restored)).startswith("forward 0 back on port 9000")


def test_a_grant_from_a_connection_lost_meanwhile_is_asked_for_again() -> None:
    # The retry thread's request is granted by a connection that dies before
    # the answer is taken: the forward must not say "up" (nothing listens
    # there any more), and the next connection's restore() asks again.
    server, events = _Server(), _Events()
    forward = _forward(server, events, retry=lambda n: 0.01)
    _after_a_reconnect(forward, server)
    server.gate, server.held = threading.Event(), False
    assert server.in_flight.wait(5)  # the retry thread's request is in flight
    server.dead = True
    forward.connection_lost("gone again")  # the connection dies meanwhile
    server.gate.set()  # ... and its grant comes back after that
    time.sleep(0.1)
    assert forward.state == "reconnecting"
    assert "forward_restored" not in events.kinds()
    server.gate, server.dead = None, False
    asked = server.asked
    forward.restore()  # the new connection
    assert forward.state == "up" and server.asked > asked
    _wait(lambda: not _reaskers())
