"""One name for a thing everywhere: event lines call a tunnel by the label
its table row shows and a forward by its spec (as the table's open and
share lines do), never "tunnel 1" or "forward 0"; against the rig's sshd."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from nbtunnel import Manager
from nbtunnel.client import display
from nbtunnel.grammar.spec import parse

from tests.rig import clients, procs

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


class _Heard:
    """Every event the manager passed on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[dict[str, Any]] = []

    def __call__(self, message: dict[str, Any]) -> None:
        with self.lock:
            self.events.append(dict(message))

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if e.get("event") == kind]


def test_event_lines_use_the_tables_names(sshd, targets, here) -> None:
    manager = Manager(engine="inline")
    heard = _Heard()
    manager.subscribe(heard)
    try:
        line = sshd.line(
            "-L", f"0:{targets.host}:{targets.echo}", "-R", f"0:127.0.0.1:{here.echo}"
        )
        tunnel = manager.open(line, name="db")
        snap = tunnel.snapshot()
        local, remote = (f.spec for f in snap.forwards)
        table = display.text_table([snap])
        rows = table.splitlines()[1:3]
        assert all(row.startswith("db ") for row in rows), table

        (up,) = heard.of("state")
        assert display.event_line(up) == "tunnel db up"
        (allocated,) = heard.of("allocated")
        assert allocated["spec"] == remote and allocated["label"] == "db"

        tunnel.forwards[0].stop()
        assert clients.wait_until(lambda: heard.of("forward_stopped"), 5)
        (stopped,) = heard.of("forward_stopped")
        assert display.event_line(stopped) == f"forward {local} stopped"

        (added,) = manager.add(tunnel, parse(line).forwards[:1])
        assert clients.wait_until(lambda: heard.of("forward_added"), 5)
        assert display.event_line(heard.of("forward_added")[0]) == (
            f"forward {added.snapshot().spec} added"
        )
        # Events keep their numbers too (added fields, nothing renamed).
        for event in heard.events:
            if "forward" in event:
                index = event["forward"]
                assert (
                    event["spec"] == tunnel.snapshot(visible=False).forwards[index].spec
                )
            if "tunnel" in event:
                assert event["tunnel"] == tunnel.id and event["label"] == "db"
    finally:
        manager.close()


def test_add_takes_specs_of_its_own_tunnels(sshd, targets) -> None:
    manager, other = Manager(engine="inline"), Manager(engine="inline")
    try:
        line = sshd.line("-L", f"0:{targets.host}:{targets.echo}")
        tunnel = manager.open(line)
        with pytest.raises(TypeError, match="forwards must be a list of ForwardSpec"):
            manager.add(tunnel, "-L 0:localhost:80")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="one of them is str"):
            manager.add(tunnel, ["-L 0:localhost:80"])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="was opened by another Manager"):
            other.add(tunnel, parse(line).forwards)
        assert len(tunnel.forwards) == 1
    finally:
        manager.close()
        other.close()


def test_the_cli_names_a_failed_forward_by_its_spec(sshd, targets, taken_port) -> None:
    taken = f"-L 127.0.0.1:{taken_port}:{targets.host}:{targets.echo}"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "nbtunnel", *sshd.args(),
            "-o", "ExitOnForwardFailure=no", *taken.split(),
            "-L", f"0:{targets.host}:{targets.echo}", sshd.destination,
        ],
        preexec_fn=procs.interruptible,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(f"forward {taken} failed: "), first
        # Said as it failed; the other forward carries on.
        while (line := proc.stdout.readline()) != "press Ctrl-C to stop\n":
            assert line, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
