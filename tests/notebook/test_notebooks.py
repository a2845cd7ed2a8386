"""The notebooks in notebooks/ run top to bottom in a real kernel (nbclient), against the rig."""

from __future__ import annotations

import shlex
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = [pytest.mark.integration, pytest.mark.notebook]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def test_tunnel_magic_notebook(sshd, targets, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NBTUNNEL_SSH", shlex.join([*sshd.args(), sshd.destination]))
    monkeypatch.setenv("NBTUNNEL_SERVICE", f"localhost:{targets.http}")
    nb = nbformat.read(NOTEBOOKS / "tunnel_magic.ipynb", as_version=4)
    assert all(not getattr(c, "outputs", None) for c in nb.cells), "commit it cleared"
    NotebookClient(
        nb,
        timeout=60,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    fetched = "".join(o.get("text", "") for o in code[3].outputs)
    assert fetched.startswith("200 ") and "bytes through the tunnel" in fetched
    listing = code[4].outputs[0]["data"]["text/plain"]
    assert f"the server connects to localhost:{targets.http}" in listing
