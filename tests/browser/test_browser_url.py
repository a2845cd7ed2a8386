"""Forward.browser_url on a hub: JupyterLab at a user's base URL with
jupyter-server-proxy, JUPYTERHUB_SERVICE_PREFIX set as a hub sets it, a -L
to a web page only the rig's server reaches, and Debian's chromium opening
the URL through the Jupyter server (nbtunnel/client/browser.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.rig import clients

from .conftest import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Lab,
    open_notebook,
    run_all,
    running_lab,
    write_notebook,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.notebook,
    pytest.mark.slow,
    pytest.mark.timeout(300),
]

BASE_URL = "/user/alice/"
# A dashboard's usual port, so the panel offers its link; free inside the
# rig's namespace, where only the server reaches it.
WEB_PORT = 8050
PAGE = "nbtunnel's page behind the server"
UI = 30_000


@pytest.fixture
def web_page(sshd: Any, tmp_path: Path) -> Iterator[int]:
    """A web page on port 8050 where the rig's sshd runs."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(f"<html><body><h1>{PAGE}</h1></body></html>")
    argv = [sys.executable, "-m", "http.server", str(WEB_PORT), "--bind", "127.0.0.1"]
    proc = subprocess.Popen(
        sshd.ns_argv([*argv, "--directory", str(site)]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        up = clients.wait_until(
            lambda: (
                proc.poll() is not None
                or clients.on_server(sshd, "closed", "127.0.0.1", WEB_PORT)
                == {"closed": False}
            ),
            15,
        )
        if proc.poll() is not None or not up:
            pytest.skip(f"no web server on port {WEB_PORT} where sshd runs")
        yield WEB_PORT
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def hub_lab(tmp_path: Path) -> Iterator[Lab]:
    with running_lab(
        tmp_path, base_url=BASE_URL, env={"JUPYTERHUB_SERVICE_PREFIX": BASE_URL}
    ) as lab:
        yield lab


def test_browser_url_opens_through_the_jupyter_server(
    sync_api: Any, hub_lab: Lab, sshd: Any, web_page: int, tmp_path: Path
) -> None:
    expect = sync_api.expect
    line = sshd.line("-L", f"0:127.0.0.1:{web_page}")
    write_notebook(
        hub_lab.root / "hub.ipynb",
        [
            "import nbtunnel\n%load_ext nbtunnel\n"
            f"t = %tunnel {line}\n"
            "print('browser_url=' + t.forwards[0].browser_url())",
            "%tunnel panel",
        ],
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(viewport={"width": 1500, "height": 900})
            page = context.new_page()
            open_notebook(page, hub_lab, "hub.ipynb")
            run_all(page)
            said = page.locator(".jp-OutputArea-output", has_text="browser_url=")
            expect(said).to_have_count(1, timeout=60_000)
            found = re.search(r"browser_url=(\S+)", said.inner_text())
            assert found, said.inner_text()
            url = found.group(1)
            port = int(url.rstrip("/").rsplit("/", 1)[1])
            assert url == f"{BASE_URL}proxy/{port}/", url

            # The panel's open link is the same URL.
            link = page.locator(".nbt-panel .nbt-row a.nbt-link")
            expect(link).to_have_attribute("href", url, timeout=UI)

            # Opened in the browser, through the Jupyter server (its login
            # cookie came with the notebook), the page behind the server.
            shown = context.new_page()
            started = time.monotonic()
            shown.goto(hub_lab.base + url)
            expect(shown.locator("h1")).to_have_text(PAGE, timeout=UI)
            print(
                f"opened {url} through the Jupyter server in "
                f"{time.monotonic() - started:.2f} s"
            )
            page.screenshot(path=str(tmp_path / "hub.png"))
        finally:
            browser.close()
