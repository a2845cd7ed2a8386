"""Dynamic forwards (-D): a SOCKS proxy here whose connections leave from the server.

The targets listen on the server's loopback (in netns mode, a namespace of
the test's own), so every name and address is resolved and reached there.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import shutil
import socket
import subprocess

import pytest
from nbtunnel import ForwardError, Manager

from tests.rig import clients
from tests.rig.data import pattern

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.fixture
def proxy(manager: Manager, sshd):
    with manager.open(sshd.line("-D", "0")) as t:
        yield t.forwards[0]


@pytest.mark.parametrize(
    ("version", "address"),
    [
        ("5", "domain"),
        ("5", "ipv4"),
        ("5", "ipv6"),
        ("4a", "domain"),
        ("4", "ipv4"),
    ],
)
def test_1_mib_echoed_through_each_kind_of_request(
    proxy, targets, version: str, address: str
) -> None:
    assert proxy.kind == "dynamic" and proxy.listen_port > 0
    host, port = {
        "domain": ("localhost", targets.echo),
        "ipv4": (targets.host, targets.echo),
        "ipv6": (targets.host6, targets.echo6),
    }[address]
    if host is None:
        pytest.skip("the server's side has no IPv6 loopback")
    data = pattern(1 * MiB)
    back = clients.socks_echo(proxy.listen_port, host, port, data, version=version)
    assert back == data
    assert proxy.stats.bytes_to_target == len(data)
    assert proxy.stats.bytes_from_target == len(data)


def test_a_refused_target_gets_a_failure_reply_and_the_proxy_serves_on(
    proxy, targets
) -> None:
    port = proxy.listen_port
    with pytest.raises(clients.SocksRefused) as five:
        clients.socks_connect("127.0.0.1", port, targets.host, targets.refused_port)
    assert five.value.code == 5  # connection refused
    with pytest.raises(clients.SocksRefused) as four:
        clients.socks_connect(
            "127.0.0.1", port, targets.host, targets.refused_port, version="4"
        )
    assert four.value.code == 0x5B  # SOCKS4 has one code for every failure
    assert clients.socks_echo(port, "localhost", targets.echo, b"still here") == (
        b"still here"
    )
    stats = proxy.stats
    assert stats.connections_failed == 2
    assert "refused" in (stats.last_error or "").lower()
    assert proxy.state == "up"


@pytest.mark.netns  # a name lookup in loopback mode would ask this machine's DNS
def test_an_unknown_name_gets_host_unreachable(proxy, targets) -> None:
    with pytest.raises(clients.SocksRefused) as refused:
        clients.socks_connect(
            "127.0.0.1", proxy.listen_port, "no-such-host.invalid", targets.echo
        )
    assert refused.value.code == 4


def test_a_client_that_is_not_socks_is_closed_and_counted(proxy, targets) -> None:
    with socket.create_connection(("127.0.0.1", proxy.listen_port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert clients.recv_all(s, 10) == b""
    stats = clients.wait_until(lambda: proxy.stats.connections_failed and proxy.stats)
    assert "0x47" in (stats.last_error or "")
    assert (
        clients.socks_echo(proxy.listen_port, "localhost", targets.echo, b"ok") == b"ok"
    )


def test_twenty_clients_at_once(proxy, targets) -> None:
    def one(i: int) -> bool:
        data = pattern(64 * 1024 + i)
        return (
            clients.socks_echo(proxy.listen_port, "localhost", targets.echo, data)
            == data
        )

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        assert all(pool.map(one, range(20)))
    assert proxy.stats.connections_total == 20


def test_curl_socks5_hostname(proxy, targets) -> None:
    # Not a platform limit: the README's setup (and CI) install curl.
    assert shutil.which("curl"), "curl is missing: apt-get install curl"
    url = f"http://localhost:{targets.http}/bytes/300000"
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "--fail",
            "--socks5-hostname",
            f"127.0.0.1:{proxy.listen_port}",
            url,
        ],
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert (
        hashlib.sha256(result.stdout).digest()
        == hashlib.sha256(pattern(300000)).digest()
    )


def test_a_taken_port_fails_the_open(manager: Manager, sshd, taken_port) -> None:
    with pytest.raises(ForwardError, match=str(taken_port)):
        manager.open(sshd.line("-D", f"127.0.0.1:{taken_port}"))
