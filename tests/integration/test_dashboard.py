"""A dashboard served here, shown to the server's side through -R at the URL the display gives.

The fetches run where sshd runs (curl in the rig's namespace in netns
mode), which cannot reach this machine except through the SSH connection.
The tests with a wide bind need the namespace: there the server's own
address is the namespace's, and binding wide on this machine would reach
beyond loopback.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nbtunnel import Manager, Tunnel

from tests.rig.data import chunks, expected_sha256
from tests.rig.sshd import SshServer, start_sshd

pytestmark = pytest.mark.integration

SIZE = 2_000_000
PAGE = "<!doctype html><title>orders</title><h1>nbtunnel dashboard ✓</h1>\n".encode()
CURL_REFUSED = 7  # "Failed to connect to host"


class _Dashboard(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/":
            body = [PAGE]
            length = len(PAGE)
        elif self.path == f"/data/{SIZE}":
            body, length = list(chunks(SIZE)), SIZE
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        for piece in body:
            self.wfile.write(piece)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def dashboard() -> Iterator[int]:
    """A plain http.server in this process, on loopback: its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Dashboard)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _fetch_there(server: SshServer, url: str) -> subprocess.CompletedProcess[bytes]:
    """curl ``url`` where sshd runs: its body, or curl's exit code and words."""
    assert shutil.which("curl"), "curl is missing: apt-get install curl"
    argv = ["curl", "-sS", "--noproxy", "*", "--max-time", "30", "-o", "-", url]
    return subprocess.run(server.ns_argv(argv), capture_output=True, timeout=60)


def _shared(tunnel: Tunnel) -> str:
    """The one URL the tunnel's HTML display offers to share."""
    links = re.findall(r"<a href='([^']+)'", tunnel._repr_html_())
    assert len(links) == 1, tunnel._repr_html_()
    return links[0]


def _text(tunnel: Tunnel) -> str:
    """The text display a terminal or ``print`` of the rich repr shows."""
    from IPython.lib.pretty import pretty

    return str(pretty(tunnel))


def _server_with(rig, **options: str) -> Iterator[SshServer]:
    if rig.netns is None:
        pytest.skip("needs the rig's namespace (a wide -R bind here leaves loopback)")
    with start_sshd(rig.netns, options=options) as server:
        yield server


@pytest.fixture
def gateway_ports_no(rig) -> Iterator[SshServer]:
    yield from _server_with(rig, GatewayPorts="no")


@pytest.fixture
def gateway_ports_yes(rig) -> Iterator[SshServer]:
    yield from _server_with(rig, GatewayPorts="yes")


def test_loopback_dashboard_reaches_the_server_and_the_display_says_so(
    manager: Manager, sshd, dashboard: int
) -> None:
    with manager.open(sshd.line("-R", f"0:127.0.0.1:{dashboard}")) as t:
        port = t.forwards[0].listen_port
        url = _shared(t)
        assert url == f"http://{sshd.host}:{port}/"
        assert "only the server itself reaches it" in t._repr_html_()
        assert f"-R 0.0.0.0:0:127.0.0.1:{dashboard}" in _text(t)
        got = _fetch_there(sshd, f"http://127.0.0.1:{port}/data/{SIZE}")
        assert got.returncode == 0, got.stderr
        assert hashlib.sha256(got.stdout).hexdigest() == expected_sha256(SIZE)
        page = _fetch_there(sshd, f"http://127.0.0.1:{port}/")
        assert page.stdout == PAGE
        if sshd.host != "127.0.0.1":
            # What the advice says: the rig's GatewayPorts clientspecified
            # keeps a -R asked for loopback there, off the shared address.
            refused = _fetch_there(sshd, url)
            assert refused.returncode == CURL_REFUSED, refused.stderr


@pytest.mark.netns
def test_a_wide_dashboard_is_fetched_at_the_shared_url(
    manager: Manager, sshd, dashboard: int
) -> None:
    with manager.open(sshd.line("-R", f"0.0.0.0:0:127.0.0.1:{dashboard}")) as t:
        url = _shared(t)
        assert url == f"http://{sshd.host}:{t.forwards[0].listen_port}/"
        assert f"share {url}" in _text(t)
        got = _fetch_there(sshd, url + f"data/{SIZE}")
        assert got.returncode == 0, got.stderr
        assert hashlib.sha256(got.stdout).hexdigest() == expected_sha256(SIZE)
        assert _fetch_there(sshd, url).stdout == PAGE


@pytest.mark.netns
def test_gatewayports_no_narrows_a_wide_bind_as_the_display_warns(
    manager: Manager, gateway_ports_no: SshServer, dashboard: int
) -> None:
    server = gateway_ports_no
    with manager.open(server.line("-R", f"0.0.0.0:0:127.0.0.1:{dashboard}")) as t:
        port = t.forwards[0].listen_port
        url = _shared(t)
        assert "GatewayPorts (sshd_config, default no) kept it on loopback" in (
            _text(t)
        )
        # The server accepted the forward, but only on its loopback.
        refused = _fetch_there(server, url)
        assert refused.returncode == CURL_REFUSED, refused.stderr
        assert _fetch_there(server, f"http://127.0.0.1:{port}/").stdout == PAGE


@pytest.mark.netns
def test_gatewayports_yes_widens_even_a_loopback_bind_as_the_advice_says(
    manager: Manager, gateway_ports_yes: SshServer, dashboard: int
) -> None:
    server = gateway_ports_yes
    # No bind address and no -g: only the server's setting decides.
    with manager.open(server.line("-R", f"0:127.0.0.1:{dashboard}")) as t:
        url = _shared(t)
        assert "unless the server's sshd_config has GatewayPorts yes" in _text(t)
        assert _fetch_there(server, url).stdout == PAGE


# -- a real dashboard library ------------------------------------------------


class _Bokeh:
    """A Bokeh server on its own event loop in a thread, as a notebook runs one."""

    def __init__(self) -> None:
        from bokeh.plotting import figure
        from bokeh.server.server import Server

        def orders(doc: Any) -> None:
            plot = figure(title="orders")
            plot.line([1, 2, 3], [12.5, 3.75, 1000.0])
            doc.add_root(plot)
            doc.title = "nbtunnel dashboard"

        self._ready = threading.Event()
        self._failed: list[BaseException] = []
        self._make = lambda: Server({"/orders": orders}, port=0, address="127.0.0.1")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(30), "bokeh did not start"
        if self._failed:
            raise self._failed[0]

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)

        async def start() -> None:
            self.server = self._make()
            self.server.start()

        try:
            loop.run_until_complete(start())
        except Exception as exc:  # noqa: BLE001 - raised again in the test's thread
            self._failed.append(exc)
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        loop.close()

    @property
    def port(self) -> int:
        return int(self.server.port)

    def close(self) -> None:
        def stop() -> None:
            self.server.stop()
            self.server.io_loop.stop()

        self.server.io_loop.add_callback(stop)
        self._thread.join(10)


@pytest.fixture
def bokeh_app() -> Iterator[_Bokeh]:
    app = _Bokeh()
    try:
        yield app
    finally:
        app.close()


@pytest.mark.netns
def test_a_bokeh_server_is_shown_at_the_shared_url(
    manager: Manager, sshd, bokeh_app: _Bokeh
) -> None:
    from bokeh.util.paths import bokehjs_path

    with manager.open(sshd.line("-R", f"0.0.0.0:0:127.0.0.1:{bokeh_app.port}")) as t:
        url = _shared(t)
        page = _fetch_there(sshd, url + "orders")
        assert page.returncode == 0, page.stderr
        assert b"<title>nbtunnel dashboard</title>" in page.stdout
        script = re.search(rb'src="(/static/js/bokeh\.min\.js[^"]*)"', page.stdout)
        assert script is not None, page.stdout[:2000]
        # BokehJS itself, byte for byte as the package ships it.
        js = _fetch_there(sshd, url.rstrip("/") + script.group(1).decode())
        shipped = Path(bokehjs_path()) / "js" / "bokeh.min.js"
        assert js.returncode == 0, js.stderr
        assert js.stdout == shipped.read_bytes()
