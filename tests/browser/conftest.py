"""JupyterLab on loopback, and Debian's chromium driven by Playwright.

A server of the test's own (its own port, token and config/runtime/data/
settings directories, stopped by its PID), and /usr/bin/chromium launched
by path: Playwright never downloads a browser here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.rig.sshd import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # root, in a container
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_UP = 90.0


@dataclass
class Lab:
    base: str  # http://127.0.0.1:PORT
    token: str
    root: Path
    proc: subprocess.Popen[bytes]
    base_url: str = "/"  # the server's, as a hub gives each user's server

    def url(self, notebook: str) -> str:
        return f"{self.base}{self.base_url}lab/tree/{notebook}?token={self.token}"

    def log(self) -> str:
        return (self.root / "server.log").read_text(errors="replace")[-4000:]


def write_notebook(path: Path, sources: list[str]) -> None:
    # A kernelspec in the metadata: without it Lab asks which kernel to use.
    nb = new_notebook(
        metadata={
            "kernelspec": {
                "name": "python3",
                "language": "python",
                "display_name": "Python 3 (ipykernel)",
            }
        }
    )
    nb.cells = [new_code_cell(s) for s in sources]
    nbformat.write(nb, path)


@pytest.fixture
def sync_api() -> Any:
    """Playwright's sync API and a chromium to drive.

    Both are set-up requirements (README), so a missing one fails the test,
    saying what to install, as a missing sshd does.
    """
    if not CHROMIUM.exists():
        pytest.fail(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api
    except ImportError:
        pytest.fail("needs playwright (pip install -e '.[test]')")
    return playwright.sync_api


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with running_lab(tmp_path) as server:
        yield server


@contextlib.contextmanager
def running_lab(
    tmp_path: Path, base_url: str = "/", env: dict[str, str] | None = None
) -> Iterator[Lab]:
    """JupyterLab at ``base_url``, its kernels started with ``env`` too."""
    # A set-up requirement like playwright: missing, the test fails.
    if importlib.util.find_spec("jupyterlab") is None:
        pytest.fail("needs jupyterlab (pip install -e '.[test]')")
    root = tmp_path / "lab"
    root.mkdir()
    settings = root / ".settings"
    # No "Jupyter news?" toast over the page, and no update check.
    notices = settings / "@jupyterlab" / "apputils-extension"
    notices.mkdir(parents=True)
    (notices / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}'
    )
    env = {
        **os.environ,
        **(env or {}),
        "JUPYTER_CONFIG_DIR": str(root / ".config"),
        "JUPYTER_RUNTIME_DIR": str(root / ".runtime"),
        "JUPYTER_DATA_DIR": str(root / ".data"),
        "PYTHONPATH": str(ROOT),  # the kernel runs this checkout's nbtunnel
    }
    port, token = free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--ServerApp.base_url={base_url}",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={root / '.workspaces'}",
        # window.jupyterapp: run the cells by command, the sturdiest way.
        "--LabApp.expose_app_in_browser=True",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    with (root / "server.log").open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        server = Lab(f"http://127.0.0.1:{port}", token, root, proc, base_url)
        try:
            _wait_up(server)
            yield server
        finally:
            if proc.poll() is None:
                # SIGTERM: the server shuts its kernels down politely, so the
                # kernel's nbtunnel hook stops the tunnels.
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _wait_up(lab: Lab) -> None:
    deadline = time.monotonic() + SERVER_UP
    while True:
        assert lab.proc.poll() is None, f"jupyter lab exited:\n{lab.log()}"
        try:
            with urllib.request.urlopen(
                f"{lab.base}{lab.base_url}api/status?token={lab.token}", timeout=2
            ):
                return
        except OSError:
            assert time.monotonic() < deadline, f"jupyter lab not up:\n{lab.log()}"
            time.sleep(0.2)


@pytest.fixture
def page(sync_api: Any, lab: Lab) -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield browser.new_page(viewport={"width": 1500, "height": 900})
        finally:
            browser.close()


def open_notebook(page: Any, lab: Lab, name: str, timeout: float = 90_000) -> None:
    page.goto(lab.url(name))
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=timeout)
    # The toolbar says "idle" before a kernel exists (cells run then are
    # dropped); the status bar's "| Idle" comes with the kernel.
    page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\| Idle$")).wait_for(
        timeout=timeout
    )


def run_all(page: Any) -> None:
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
