"""The workflow notebooks (database, dashboard, SOCKS) run in a real kernel against the rig.

Each runs cell by cell with nbclient, as a person would in Jupyter, with the
ssh line and the services set through the environment variables the
notebooks read.  The rig's PostgreSQL and HTTP target listen where only
the server reaches them (netns mode), and the dashboard is fetched from the
server's side while the kernel still serves it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from html import unescape
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from tests.rig import clients
from tests.rig import postgres as pg

pytestmark = [pytest.mark.integration, pytest.mark.notebook]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
WORKFLOWS = ("database.ipynb", "dashboard.ipynb", "socks.ipynb")
SKIP_DIRS = {"venv", "build", "dist", "node_modules", "__pycache__"}
CURL_REFUSED = 7  # "Failed to connect to host"


class Run:
    """A notebook being executed cell by cell in a kernel of its own."""

    def __init__(self, client: NotebookClient, nb: Any) -> None:
        self.client = client
        self.nb = nb
        self.done = 0

    def until(self, needle: str, *, whole: bool = False) -> Any:
        """Run every cell up to and including the next code cell containing
        ``needle`` (or, with ``whole``, being exactly that); return that cell."""
        for index in range(self.done, len(self.nb.cells)):
            cell = self.nb.cells[index]
            self.client.execute_cell(cell, index)
            self.done = index + 1
            source = cell.source.strip()
            found = source == needle if whole else needle in source
            if cell.cell_type == "code" and found:
                return cell
        raise AssertionError(f"no code cell containing {needle!r} is left to run")

    def rest(self) -> None:
        for index in range(self.done, len(self.nb.cells)):
            self.client.execute_cell(self.nb.cells[index], index)
        self.done = len(self.nb.cells)

    @property
    def kernel_pid(self) -> int:
        return int(self.client.km.provisioner.process.pid)


@contextmanager
def running(name: str, tmp_path: Path) -> Iterator[Run]:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    # The kernel is shut down on exit, which stops whatever tunnels a
    # failed run left open.
    with client.setup_kernel():
        yield Run(client, nb)


def text(cell: Any) -> str:
    """Streams and plain-text results of a cell, as a person reads them."""
    return "".join(
        o.get("text", "") + o.get("data", {}).get("text/plain", "")
        for o in cell.outputs
    )


def html(cell: Any) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in cell.outputs)


def _ssh(sshd) -> str:
    return shlex.join([*sshd.args(), sshd.destination])


def _curl_there(sshd, url: str) -> subprocess.CompletedProcess[bytes]:
    """GET ``url`` where sshd runs: in netns mode, a namespace that reaches
    this machine only through the SSH connection."""
    argv = ["curl", "-sS", "--noproxy", "*", "--max-time", "30", "-o", "-", url]
    return subprocess.run(sshd.ns_argv(argv), capture_output=True, timeout=60)


def _notebooks_in_repo() -> list[Path]:
    found = []
    for top, dirs, files in os.walk(ROOT):
        # Pruned, not filtered: .git and virtualenvs are large and hold no
        # notebook of ours (.ipynb_checkpoints is Jupyter's, never committed).
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS]
        found += [Path(top, f) for f in files if f.endswith(".ipynb")]
    return sorted(found)


def test_every_notebook_in_the_repo_is_committed_cleared() -> None:
    found = _notebooks_in_repo()
    assert {NOTEBOOKS / n for n in WORKFLOWS} <= set(found)
    for path in found:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "python3", path
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [], f"{path.name}: clear the outputs"
                assert cell.execution_count is None, f"{path.name}: clear the counts"


@pytest.mark.parametrize("target", ["tcp", "unix socket"])
def test_database_notebook_reads_the_servers_table_into_a_dataframe(
    target: str, sshd, postgres: pg.Postgres, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("NBTUNNEL_SSH", _ssh(sshd))
    # A name that resolves nowhere here: only the URL url() rewrote can connect.
    monkeypatch.setenv(
        "NBTUNNEL_DB_URL", "postgresql+psycopg://analyst@db.internal:5432/sales"
    )
    if target == "tcp":
        monkeypatch.setenv("NBTUNNEL_DB_TARGET", f"127.0.0.1:{postgres.port}")
        # Over TCP the rig's cluster wants the password: it comes from the
        # environment, as the notebook advises, never from the notebook.
        monkeypatch.setenv("PGPASSWORD", pg.PASSWORD)
    else:
        # The form the notebook's note describes; the rig trusts its socket.
        monkeypatch.setenv("NBTUNNEL_DB_TARGET", str(postgres.socket))
        monkeypatch.delenv("PGPASSWORD", raising=False)
    with running("database.ipynb", tmp_path) as run:
        frame = run.until("read_sql")
        rows = [
            [unescape(c) for c in re.findall(r"<td>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", html(frame), re.S)
        ]
        rows = [r for r in rows if r]  # the header row has <th> only
        assert [(int(i), item, float(amount)) for i, item, amount in rows] == [
            (int(i), item, float(amount)) for i, item, amount in pg.ORDERS
        ], html(frame)
        assert "grüße, ünïcode" in text(frame)
        listing = text(run.until("%tunnel", whole=True))
        # One connection through the forward, closed by engine.dispose().
        row = re.search(
            r"this machine 127\.0\.0\.1:(\d+) +the server connects to (\S+) .* up +0/1 ",
            listing,
        )
        assert row, listing
        assert row.group(2) == os.environ["NBTUNNEL_DB_TARGET"]
        run.until("%tunnel stop all")
        assert clients.wait_until(
            lambda: clients.port_is_closed("127.0.0.1", int(row.group(1))), 10
        )
        run.rest()


def test_dashboard_notebook_is_fetched_from_the_server_side_while_it_serves(
    sshd, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("NBTUNNEL_SSH", _ssh(sshd))
    with running("dashboard.ipynb", tmp_path) as run:
        shown = run.until("%tunnel -R")
        printed = text(run.until("on the server:"))
        match = re.fullmatch(r"on the server: (http://127\.0\.0\.1:(\d+)/)\n", printed)
        assert match, printed
        url, remote_port = match.group(1), match.group(2)
        # The table offers the server's address and says who reaches it.
        assert f"share http://{sshd.host}:{remote_port}/" in text(shown)
        assert "only the server itself reaches it" in text(shown)
        assert f"<a href='http://{sshd.host}:{remote_port}/'" in html(shown)

        got = _curl_there(sshd, url)
        assert got.returncode == 0, got.stderr
        page = got.stdout.decode()
        assert "<h1>orders dashboard</h1>" in page
        # This kernel served it, not anything else listening somewhere.
        assert f"Served by the kernel with PID {run.kernel_pid}." in page

        run.until("%tunnel stop all")
        # Stopped means cancelled on the server: it no longer listens there.
        gone = _curl_there(sshd, url)
        assert gone.returncode == CURL_REFUSED, gone.stderr
        run.rest()


def test_socks_notebook_gets_a_page_only_the_server_reaches(
    sshd, targets, rig, tmp_path: Path, monkeypatch
) -> None:
    # "localhost" by name: socks5h has the server resolve it, to itself.
    internal = f"http://localhost:{targets.http}/"
    monkeypatch.setenv("NBTUNNEL_SSH", _ssh(sshd))
    monkeypatch.setenv("NBTUNNEL_INTERNAL_URL", internal)
    if rig.netns is not None:
        # Here that URL leads nowhere: what the notebook gets came via the server.
        assert clients.port_is_closed("127.0.0.1", targets.http)
    with running("socks.ipynb", tmp_path) as run:
        proxies = text(run.until("proxy.proxies"))
        proxy = re.search(r"'http': 'socks5h://127\.0\.0\.1:(\d+)'", proxies)
        assert proxy, proxies
        fetched = text(run.until("requests.get"))
        assert fetched == "200 text/plain; charset=utf-8\nnbtunnel rig\n\n", fetched
        # socks5h: the server got the name to resolve, not an address from here.
        events = text(run.until("t", whole=True))
        assert re.search(rf" → localhost:{targets.http}$", events, re.M), events
        run.until("%tunnel stop all")
        port = int(proxy.group(1))
        assert clients.wait_until(lambda: clients.port_is_closed("127.0.0.1", port), 10)
        run.rest()
