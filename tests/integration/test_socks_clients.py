"""requests through a -D forward's ``proxies``: the server resolves and reaches.

The rig's HTTP target listens on the server's loopback (a namespace of the
test's own in netns mode), so what requests gets came through the proxy.
"""

from __future__ import annotations

import hashlib
import socket

import pytest
import requests
from nbtunnel import Manager

from tests.rig import clients
from tests.rig.data import expected_sha256

pytestmark = pytest.mark.integration


SIZE = 1_000_000


def _targets_of(tunnel) -> list[str]:
    """The targets the proxy was asked for, as its connection events name them."""
    return [e.split(" → ", 1)[1] for e in tunnel.events if " connection " in e]


def _get(url: str, proxies: dict[str, str]) -> bytes:
    with requests.Session() as session:
        reply = session.get(url, proxies=proxies, timeout=30)
        reply.raise_for_status()
        return bytes(reply.content)


def test_requests_gets_what_only_the_server_reaches_by_a_name_it_resolves(
    manager: Manager, sshd, targets
) -> None:
    with manager.open(sshd.line("-D", "0")) as t:
        fwd = t.forwards[0]
        proxy = f"socks5h://127.0.0.1:{fwd.listen_port}"
        assert fwd.proxies == {"http": proxy, "https": proxy}
        body = _get(f"http://localhost:{targets.http}/bytes/{SIZE}", fwd.proxies)
        assert hashlib.sha256(body).hexdigest() == expected_sha256(SIZE)
        assert fwd.stats.bytes_from_target > SIZE  # the body and its headers
        # socks5h: the name itself went to the proxy, for the server to resolve.
        wanted = f"localhost:{targets.http}"
        assert clients.wait_until(lambda: wanted in _targets_of(t), 10)
        # Plain socks5 would have resolved it here and sent an address.
        here = {k: v.replace("socks5h:", "socks5:") for k, v in fwd.proxies.items()}
        assert _get(f"http://localhost:{targets.http}/", here) == b"nbtunnel rig\n"
        resolved = f"127.0.0.1:{targets.http}"
        assert clients.wait_until(lambda: resolved in _targets_of(t), 10)


def test_an_ipv6_proxy_is_written_in_brackets_and_works(
    manager: Manager, sshd, targets
) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    with manager.open(sshd.line("-D", "[::1]:0")) as t:
        fwd = t.forwards[0]
        assert fwd.proxies["http"] == f"socks5h://[::1]:{fwd.listen_port}"
        body = _get(f"http://localhost:{targets.http}/bytes/1000", fwd.proxies)
        assert hashlib.sha256(body).hexdigest() == expected_sha256(1000)
