"""Where the user's browser opens a forward (nbtunnel/client/browser.py,
urls.browser_url): through a Jupyter server's jupyter-server-proxy or
straight to this machine, and never a guess.

A real JupyterLab with a base URL and jupyter-server-proxy, and chromium
opening the URL, is tests/browser/test_browser_url.py; here the pure parts
and the answer outside any server.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from nbtunnel import UrlError
from nbtunnel.client import browser, urls
from nbtunnel.platform import processes
from nbtunnel.ui.panel import view

from .snapshots import forward_snapshot

ROOT = Path(__file__).resolve().parents[2]
HUB = browser.Route("/user/alice/", "the hub's server")


def _local(spec: str = "-L 0:web:80", **where: object):  # type: ignore[no-untyped-def]
    fields: dict[str, object] = {
        "listen_host": "127.0.0.1",
        "listen_port": 41234,
        "target_host": "web",
        "target_port": 80,
        **where,
    }
    return forward_snapshot(spec, **fields)


def test_outside_a_jupyter_kernel_it_is_this_machine_and_says_why() -> None:
    code = (
        "from nbtunnel.client import browser; r = browser.route(); "
        "print(r.prefix, '|', r.why)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert done.stdout.strip() == "None | not running in a Jupyter kernel"


def test_the_url_through_the_proxy_and_past_it() -> None:
    assert HUB.url(41234) == "/user/alice/proxy/41234/"
    assert HUB.url(41234, "dash/?x=1") == "/user/alice/proxy/41234/dash/?x=1"
    assert HUB.url(41234, "/", absolute=True) == "/user/alice/proxy/absolute/41234/"
    assert browser.DIRECT.url(41234) == "http://127.0.0.1:41234/"
    assert browser.DIRECT.url(41234, "/a", host="[::1]") == "http://[::1]:41234/a"


def test_a_local_forward() -> None:
    f = _local()
    assert urls.browser_url(f, "u@h", HUB, "/", False) == "/user/alice/proxy/41234/"
    assert urls.browser_url(f, "u@h", browser.DIRECT, "/status", False) == (
        "http://127.0.0.1:41234/status"
    )
    six = _local(listen_host="::1")
    assert urls.browser_url(six, "u@h", browser.DIRECT, "/", False) == (
        "http://[::1]:41234/"
    )


def test_a_remote_forward_is_its_url_to_share() -> None:
    f = forward_snapshot(
        "-R 0.0.0.0:0:127.0.0.1:8050", listen_host="0.0.0.0", listen_port=8050
    )
    assert urls.browser_url(f, "u@gw.example.org", HUB, "/dash", False) == (
        "http://gw.example.org:8050/dash"
    )


@pytest.mark.parametrize(
    ("f", "says"),
    [
        (forward_snapshot("-D 0", listen_host="127.0.0.1", listen_port=1080), "SOCKS"),
        (_local(state="stopped"), "stopped"),
        (_local(listen_port=None, listen_path="/tmp/web.sock"), "unix socket"),
        (forward_snapshot("-R 0:/run/a.sock:h:80", listen_path="/run/a.sock"), "share"),
    ],
)
def test_no_url_where_a_browser_cannot_go(f: object, says: str) -> None:
    with pytest.raises(UrlError, match=says):
        urls.browser_url(f, "u@h", HUB, "/", False)  # type: ignore[arg-type]


def test_the_panels_link_goes_through_the_route() -> None:
    f = _local()
    assert view.link(f) == "http://127.0.0.1:41234/"
    assert view.link(f, HUB) == "/user/alice/proxy/41234/"
    # The proxy speaks plain HTTP to what it proxies: a TLS service gets no
    # link through it (and 127.0.0.1 would not open elsewhere).
    tls = _local("-L 0:web:443", target_port=443)
    assert view.link(tls) == "https://127.0.0.1:41234/"
    assert view.link(tls, HUB) is None


class _Listener:
    """A port on loopback that answers each connection as ``answer`` says
    (garbage, or nothing at all), counting them."""

    def __init__(self, answer: bytes | None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._answer = answer
        self._held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.accepted += 1
                if self._answer is None:
                    self._held.append(conn)  # never a word
                else:
                    conn.sendall(self._answer)
                    conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self._held:
            conn.close()


def _route_in(runtime: Path, servers: list[dict[str, object]], calls: int = 1) -> str:
    """route() in a fresh Python on a hub whose runtime dir lists ``servers``:
    its answers, one line per call."""
    runtime.mkdir(exist_ok=True)
    for i, info in enumerate(servers):
        (runtime / f"jpserver-{i}.json").write_text(json.dumps(info))
    code = (
        "import time\nfrom nbtunnel.client import browser\n"
        f"for _ in range({calls}):\n"
        "    t = time.monotonic(); r = browser.route()\n"
        "    print(r.prefix, '|', r.why, '|', round(time.monotonic() - t, 1))\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")},
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    assert done.stderr == "", done.stderr
    return done.stdout


def _info(port: int, pid: int) -> dict[str, object]:
    return {
        "url": f"http://127.0.0.1:{port}/user/alice/",
        "base_url": "/user/alice/",
        "token": "secret",
        "pid": pid,
    }


def test_a_hub_without_an_answering_proxy_is_not_guessed(tmp_path: Path) -> None:
    out = _route_in(tmp_path / "runtime", [])
    assert out.startswith(
        "None | on a hub, but no server of this user at /user/alice/ answers as "
        "jupyter-server-proxy |"
    )


def test_a_server_that_speaks_no_http_is_no_route(tmp_path: Path) -> None:
    garbage = _Listener(b"SSH-2.0-OpenSSH_9.2\r\nnot http at all\r\n")
    try:
        out = _route_in(tmp_path / "runtime", [_info(garbage.port, os.getpid())])
    finally:
        garbage.close()
    assert out.startswith("None | on a hub, but no server")
    assert garbage.accepted == 1


def test_a_stale_servers_port_gets_no_token(tmp_path: Path) -> None:
    # Its process is gone: the port may be anyone's now.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    if processes.alive_and_mine(int(dead.stdout)):
        pytest.skip("this system cannot tell whether a process is gone (Windows)")
    taker = _Listener(b"HTTP/1.0 200 OK\r\n\r\n{}")
    try:
        out = _route_in(tmp_path / "runtime", [_info(taker.port, int(dead.stdout))])
    finally:
        taker.close()
    assert out.startswith("None | on a hub, but no server")
    assert taker.accepted == 0


def test_a_silent_server_costs_the_deadline_once_and_is_asked_again(
    tmp_path: Path,
) -> None:
    silent = _Listener(None)
    try:
        out = _route_in(tmp_path / "runtime", [_info(silent.port, os.getpid())], 2)
    finally:
        silent.close()
    lines = out.splitlines()
    assert len(lines) == 2
    for line in lines:
        prefix, _, seconds = line.split(" | ")
        assert prefix == "None"
        assert browser.DEADLINE - 0.5 <= float(seconds) <= browser.DEADLINE + 1.5
    assert silent.accepted == 2  # cut short by the deadline: not kept
