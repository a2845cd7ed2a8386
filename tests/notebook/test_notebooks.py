"""The notebooks in notebooks/ run top to bottom in a real kernel (nbclient), against the rig."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
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


def test_quickstart_runs_anywhere_with_nbconvert(tmp_path: Path) -> None:
    """No rig, no sshd, HOME empty, no agent: the embedded server is its peer."""
    out = tmp_path / "quickstart.out.ipynb"
    source = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    assert all(not getattr(c, "outputs", None) for c in source.cells), (
        "commit it cleared"
    )
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("jupyter")),
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--ExecutePreprocessor.timeout=60",
            "--output",
            str(out),
            str(NOTEBOOKS / "quickstart.ipynb"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env={**env, "HOME": str(tmp_path), "PYTHONPATH": str(NOTEBOOKS.parent)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    nb = nbformat.read(out, as_version=4)
    text = {
        i: "".join(
            o.get("text", "") + o.get("data", {}).get("text/plain", "")
            for o in c.outputs
        )
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
    }
    joined = "\n".join(text.values())
    assert "200 <!doctype html><title>the private service" in joined  # -L
    assert "socks5h://127.0.0.1:" in joined  # -D's proxies
    after_proxies = joined.rpartition("socks5h://")[2]
    assert "200 <!doctype html><title>the private service" in after_proxies
    assert "200 <!doctype html><title>your dashboard" in joined  # -R
    assert not any(
        o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", [])
    )
