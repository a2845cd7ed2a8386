"""Bad and slow clients at a real ``-D`` SOCKS proxy, through the rig's sshd.

The fuzzed bytes go to a proxy whose sshd permits opening the echo target
and nothing else (``PermitOpen``): whatever host a random request names, the
server refuses it without resolving or dialling it, so nothing leaves the
rig, and a request that does name the echo target is served through the
SSH server (in netns mode the only way to it).  After every example the
proxy, the sshd and the target must hold no connection of it, and the proxy
must still serve a valid client.

Slow clients: a slowloris must hold up neither other clients nor stop(), and
the whole handshake, not each read, has a deadline (HANDSHAKE_TIMEOUT).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nbtunnel import Manager
from nbtunnel.forward import dynamic

from tests.rig import clients, procs
from tests.rig.data import pattern
from tests.rig.launcher import Targets
from tests.rig.rig import Rig
from tests.rig.sshd import SshServer, start_sshd

pytestmark = pytest.mark.integration

GREETING = b"\x05\x01\x00"  # SOCKS5, one method: no authentication
METHOD_OK = b"\x05\x00"
SUCCESS5 = b"\x05\x00\x00\x01" + bytes(6)


def request5(port: int) -> bytes:
    """A SOCKS5 CONNECT to 127.0.0.1:port (the server's loopback)."""
    return b"\x05\x01\x00\x01" + bytes([127, 0, 0, 1]) + struct.pack(">H", port)


@pytest.fixture(scope="module")
def guarded_sshd(rig: Rig, targets: Targets) -> Iterator[SshServer]:
    allowed = f"127.0.0.1:{targets.echo} localhost:{targets.echo}"
    with start_sshd(rig.netns, options={"PermitOpen": allowed}) as server:
        yield server


@pytest.fixture(scope="module")
def proxy(guarded_sshd: SshServer):
    manager = Manager(engine="process")
    try:
        tunnel = manager.open(guarded_sshd.line("-D", "0"))
        yield tunnel.forwards[0]
    finally:
        manager.close()


def held_at_server(server: SshServer, targets: Targets) -> int:
    """Connections to the echo target that the sshd's sessions hold."""
    return clients.tcp_connections(procs.descendants(server.pid), targets.echo)


def held_at_target(targets: Targets) -> int:
    """Connections the echo target holds, from whoever."""
    return clients.tcp_connections([targets.pid], targets.echo)


def assert_nothing_left(proxy, server: SshServer, targets: Targets) -> None:
    """No connection open at the proxy, the server, or the target."""
    clients.wait_until(
        lambda: proxy.stats.connections_open == 0, 10, message="the proxy let go"
    )
    clients.wait_until(
        lambda: held_at_server(server, targets) == 0, 10, message="sshd let go"
    )
    clients.wait_until(
        lambda: held_at_target(targets) == 0, 10, message="the target let go"
    )


def assert_serves(proxy, targets: Targets) -> None:
    data = b"a valid client after the fuzz"
    port = proxy.listen_port
    assert clients.socks_echo(port, "127.0.0.1", targets.echo, data, timeout=10) == (
        data
    )
    assert proxy.state == "up"


# Mostly garbage, but garbage near each branch of the parser: any bytes,
# bytes after each version byte, after a good greeting, and a request with
# random fields (names and addresses the server will refuse).
_anything = st.binary(max_size=600)
_random_requests = st.builds(
    lambda cmd, atyp, rest: b"\x05" + bytes([cmd, 0, atyp]) + rest,
    st.integers(0, 3),
    st.sampled_from([1, 3, 4, 0, 2, 255]),
    st.binary(max_size=300),
)
fuzz = st.one_of(
    _anything,
    _anything.map(lambda b: b"\x04" + b),
    _anything.map(lambda b: b"\x04\x01" + b),
    _anything.map(lambda b: b"\x05" + b),
    _anything.map(lambda b: GREETING + b),
    _random_requests.map(lambda r: GREETING + r),
)


def send_and_finish(port: int, data: bytes, ending: str) -> bytes | None:
    """Send ``data``, then end as ``ending`` says; what came back before EOF.

    "half-close": shut down our side and read to EOF (None if no EOF came:
    the proxy kept the connection open); "close": close at once; "reset":
    close with a RST, as a crashed client does.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(data)
        except OSError:
            return b""  # the proxy refused early and hung up: fine
        if ending == "reset":
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            return b""
        if ending == "close":
            return b""
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        try:
            return clients.recv_all(sock, 10)
        except TimeoutError:
            return None
        except OSError:
            return b""


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=fuzz, ending=st.sampled_from(["half-close", "close", "reset"]))
def test_random_bytes_neither_crash_the_proxy_nor_leave_a_channel(
    proxy, guarded_sshd, targets, data: bytes, ending: str
) -> None:
    got = send_and_finish(proxy.listen_port, data, ending)
    assert got is not None, "the proxy kept a connection open after the client's EOF"
    assert_nothing_left(proxy, guarded_sshd, targets)
    assert_serves(proxy, targets)


@settings(max_examples=40, deadline=None)
@given(
    payload=st.binary(max_size=200_000),
    ending=st.sampled_from(["half-close", "close", "reset"]),
)
def test_a_good_request_with_any_payload_echoes_it_or_leaves_nothing(
    proxy, guarded_sshd, targets, payload: bytes, ending: str
) -> None:
    # Pipelined greeting and request, then the payload: what a fast client
    # sends, and what a client that dies at once leaves the proxy to clean up.
    hello = GREETING + request5(targets.echo)
    got = send_and_finish(proxy.listen_port, hello + payload, ending)
    if ending == "half-close":
        assert got == METHOD_OK + SUCCESS5 + payload
    assert_nothing_left(proxy, guarded_sshd, targets)
    assert_serves(proxy, targets)


def test_a_client_that_resets_after_its_request_leaves_no_channel(
    proxy, guarded_sshd, targets
) -> None:
    """It is gone before the proxy can say "connected": the channel the proxy
    opened for it must be closed, not left with the target on the other end."""
    for _ in range(10):
        with socket.create_connection(("127.0.0.1", proxy.listen_port), 10) as sock:
            sock.sendall(GREETING)
            assert clients._recv_exact(sock, 2) == METHOD_OK
            sock.sendall(request5(targets.echo))
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
    assert_nothing_left(proxy, guarded_sshd, targets)
    assert_serves(proxy, targets)


def dribble(socks: list[socket.socket], data: bytes, interval: float) -> None:
    """Send ``data`` on every socket one byte per ``interval`` (a slowloris)."""
    for i in range(len(data)):
        time.sleep(interval)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.sendall(data[i : i + 1])


@pytest.mark.slow
def test_slowloris_clients_do_not_hold_up_the_others(
    proxy, guarded_sshd, targets
) -> None:
    port = proxy.listen_port
    handshake = GREETING + request5(targets.echo)
    slow = [socket.create_connection(("127.0.0.1", port), 10) for _ in range(50)]
    dribbler = threading.Thread(target=dribble, args=(slow, handshake, 1.0))
    dribbler.start()
    data = pattern(64 * 1024)

    def timed_echo(_: int) -> tuple[bytes, float]:
        started = time.monotonic()
        back = clients.socks_echo(port, "127.0.0.1", targets.echo, data, timeout=10)
        return back, time.monotonic() - started

    try:
        clients.wait_until(lambda: proxy.stats.connections_open >= len(slow))
        latencies: list[float] = []
        rounds = 0
        # A round of ten concurrent clients a second, for as long as the slow
        # ones are in their handshake (each of them holding a connection).
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            while dribbler.is_alive() and rounds < 8:
                started = time.monotonic()
                assert proxy.stats.connections_open >= len(slow)
                results = list(pool.map(timed_echo, range(10)))
                assert [back for back, _ in results] == [data] * 10
                latencies += [took for _, took in results]
                rounds += 1
                time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
        assert dribbler.is_alive(), "the handshake ended before the fast clients did"
        assert rounds >= 5
        assert max(latencies) < 2.0, sorted(latencies)[-5:]
        dribbler.join()
        # Slow is not wrong: each slow client is then served in full.
        for sock in slow:
            sock.settimeout(10)
            assert clients._recv_exact(sock, 12) == METHOD_OK + SUCCESS5
            sock.sendall(b"slow but fine")
            sock.shutdown(socket.SHUT_WR)
            assert clients.recv_all(sock, 10) == b"slow but fine"
    finally:
        dribbler.join()
        for sock in slow:
            sock.close()
    assert_nothing_left(proxy, guarded_sshd, targets)


@pytest.fixture
def inline_manager() -> Iterator[Manager]:
    manager = Manager(engine="inline")
    yield manager
    manager.close()


def test_stop_is_prompt_while_a_client_is_in_its_handshake(
    inline_manager: Manager, guarded_sshd, targets
) -> None:
    tunnel = inline_manager.open(guarded_sshd.line("-D", "0"))
    port = tunnel.forwards[0].listen_port
    with socket.create_connection(("127.0.0.1", port), 10) as sock:
        sock.sendall(GREETING[:1])  # and then nothing for a long time
        clients.wait_until(lambda: tunnel.forwards[0].stats.connections_open == 1)
        started = time.monotonic()
        tunnel.stop()
        took = time.monotonic() - started
        assert took < 3.0, f"stop() waited {took:.1f} s for a client's handshake"
        assert clients.recv_all(sock, 5) == b""  # the proxy hung up on it
    assert clients.port_is_closed("127.0.0.1", port)


def seconds_until_hung_up(
    sock: socket.socket, data: bytes, interval: float, give_up: float
) -> float | None:
    """Send ``data`` a byte per ``interval`` until the proxy hangs up: when
    it did, or None if it still listened after ``give_up`` seconds."""
    sock.settimeout(interval)
    started = time.monotonic()
    for byte in data:
        if time.monotonic() - started > give_up:
            return None
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(16) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue  # nothing to read: the proxy still waits for more
        except OSError:
            return time.monotonic() - started
    return None


def test_the_whole_handshake_has_a_deadline_not_each_read(
    inline_manager: Manager, guarded_sshd, targets, monkeypatch
) -> None:
    # The inline engine runs the proxy in this process, so its timeout can
    # be made short; a byte every 0.3 s keeps any per-read timeout happy.
    monkeypatch.setattr(dynamic, "HANDSHAKE_TIMEOUT", 1.5)
    tunnel = inline_manager.open(guarded_sshd.line("-D", "0"))
    fwd = tunnel.forwards[0]
    # SOCKS4 with a long user id: 255 bytes may come before its NUL.
    handshake = b"\x04\x01" + struct.pack(">H", targets.echo) + bytes([127, 0, 0, 1])
    handshake += b"u" * 200
    with socket.create_connection(("127.0.0.1", fwd.listen_port), 10) as sock:
        hung_up = seconds_until_hung_up(sock, handshake, 0.3, give_up=6.0)
    assert hung_up is not None, "the proxy read a 1.5 s handshake for 6 s"
    assert 1.0 < hung_up < 3.5
    stats = clients.wait_until(lambda: fwd.stats.connections_failed and fwd.stats)
    assert "1.5 s" in (stats.last_error or "")
    # The thread serving it counts the failure, then the connection's end.
    clients.wait_until(lambda: fwd.stats.connections_open == 0, 5)
