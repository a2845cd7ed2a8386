"""A tunnel shared with Dask workers: the line they open, what the kernel's
side knows of them, and what importing costs (nbtunnel.client.sharing,
nbtunnel.dask; the cluster itself is tests/integration/test_dask.py)."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import time

import pytest
from nbtunnel import SpecError, parse
from nbtunnel.client import display, sharing
from nbtunnel.client.sharing import Workers, WorkerShare
from nbtunnel.platform import place
from nbtunnel.status import TunnelSnapshot
from nbtunnel.ui.panel import view

from tests.unit.snapshots import forward_snapshot

LINE = "-v -J login -i ~/.ssh/id -o ServerAliveInterval=30 -L 0:db:5432 -D 0 u@h"


def _forwards() -> tuple:
    return (
        forward_snapshot("-L 0:db:5432", listen_host="127.0.0.1", listen_port=40001),
        forward_snapshot("-D 0", listen_host="127.0.0.1", listen_port=40002),
    )


def test_workers_open_the_tunnels_ports_never_asking_and_without_v() -> None:
    line = sharing.worker_line(parse(LINE), _forwards())
    assert line == (
        "-i '~/.ssh/id' -J login -o ServerAliveInterval=30 -o BatchMode=yes"
        " -L 40001:db:5432 -D 40002 u@h"
    )
    # The same ssh line: the worker's ~ is the worker's home.
    assert parse(line).identities == ("~/.ssh/id",)


def test_a_bind_address_stays_and_a_batchmode_given_is_kept() -> None:
    spec = parse("-o BatchMode=no -L 127.0.0.1:0:db:5432 u@h")
    fwd = forward_snapshot("-L 127.0.0.1:0:db:5432", listen_port=40001)
    line = sharing.worker_line(spec, (fwd,))
    assert line == "-o BatchMode=no -L 127.0.0.1:40001:db:5432 u@h"


def test_stopped_forwards_are_left_out_and_none_running_is_refused() -> None:
    stopped = forward_snapshot("-L 0:db:5432", state="stopped", listen_port=1)
    running = forward_snapshot("-D 0", listen_port=40002)
    assert sharing.worker_line(parse(LINE), (stopped, running)).endswith("-D 40002 u@h")
    with pytest.raises(SpecError, match="has no forward running to share"):
        sharing.worker_line(parse(LINE), (stopped,))


@pytest.mark.parametrize(
    ("flag", "spec", "says"),
    [
        ("-R", "8080:localhost:80", "each would ask the server for the same port"),
        ("-L", "/tmp/db.sock:db:5432", "listens on a unix socket"),
    ],
)
def test_what_workers_cannot_share_is_refused_naming_it(
    flag: str, spec: str, says: str
) -> None:
    fwd = forward_snapshot(f"{flag} {spec}", listen_port=8080)
    with pytest.raises(SpecError, match=says) as caught:
        sharing.worker_line(parse(f"{flag} {spec} u@h"), (fwd,))
    assert f"'{flag} {spec}'" in str(caught.value)
    with pytest.raises(SpecError, match=says):
        sharing.line_for_workers(parse(f"{flag} {spec} u@h"))


def test_a_remote_forward_beside_others_is_left_out() -> None:
    remote = forward_snapshot("-R 8080:localhost:80", listen_port=8080)
    spec = parse("-R 8080:localhost:80 -L 0:db:5432 u@h")
    line = sharing.worker_line(spec, (remote, _forwards()[0]))
    assert line == "-o BatchMode=yes -L 40001:db:5432 u@h"


def test_a_line_needs_its_ports_written_out() -> None:
    with pytest.raises(SpecError, match=r"'-L 0:db:5432': a worker needs the port"):
        sharing.line_for_workers(parse("-L 0:db:5432 u@h"))
    assert sharing.line_for_workers(parse("-vv -L 5433:db:5432 u@h")) == (
        "-o BatchMode=yes -L 5433:db:5432 u@h"
    )


def test_the_workers_record_keeps_each_workers_latest_word() -> None:
    workers = Workers()
    assert workers.summary() is None
    workers.note(WorkerShare("tcp://10.0.0.2:9000", "up"))
    assert workers.summary() == "up on 1 Dask worker"
    workers.note(WorkerShare("tcp://10.0.0.1:9000", "up"))
    assert workers.summary() == "up on 2 Dask workers"
    why = "worker tcp://10.0.0.3:9000: identity file ~/.ssh/id does not exist"
    workers.note(WorkerShare("tcp://10.0.0.3:9000", "failed", why))
    assert workers.summary() == f"up on 2 of 3 Dask workers; {why}"
    assert [s.worker for s in workers.all()] == [
        "tcp://10.0.0.1:9000",
        "tcp://10.0.0.2:9000",
        "tcp://10.0.0.3:9000",
    ]
    workers.note(WorkerShare("tcp://10.0.0.2:9000", "ended"))
    assert workers.summary() == f"up on 1 of 2 Dask workers; {why}"
    for n in range(5):
        workers.note(WorkerShare(f"tcp://10.0.1.{n}:9000", "failed", f"e{n}"))
    assert workers.summary() == (
        f"up on 1 of 7 Dask workers; {why}; e0; e1; 3 more failed (Tunnel.workers)"
    )
    for n in range(5):
        workers.note(WorkerShare(f"tcp://10.0.1.{n}:9000", "ended"))
    workers.forget()
    assert workers.all() == [] and workers.summary() is None


def test_an_answer_asked_before_a_worker_left_does_not_bring_it_back() -> None:
    workers = Workers()
    asked_at = time.monotonic()
    workers.note(WorkerShare("tcp://w:1", "ended"))  # the scheduler's word
    workers.note(WorkerShare("tcp://w:1", "up"), asked_at)  # the older answer
    assert workers.all() == []
    workers.note(WorkerShare("tcp://w:1", "up"))  # it came back and said so
    assert [s.state for s in workers.all()] == ["up"]
    later = time.monotonic()
    workers.note(WorkerShare("tcp://w:2", "up"), later)
    assert len(workers.all()) == 2


def test_a_stopped_tunnel_tells_its_workers_once() -> None:
    workers, told = Workers(), []
    workers.plugin = "p"
    workers.closers = {1: lambda: told.append(1), 2: lambda: told.append(2)}
    workers.close()
    workers.close()
    assert told == [1, 2]


def _shared() -> TunnelSnapshot:
    return TunnelSnapshot(
        id=1,
        destination="u@h",
        state="up",
        error=None,
        forwards=_forwards()[:1],
        name="db",
        workers="up on 1 of 2 Dask workers; worker tcp://w:1: refused",
    )


def test_the_tables_and_the_panel_say_it_under_the_tunnel() -> None:
    snap = _shared()
    assert "tunnel db: up on 1 of 2 Dask workers; worker tcp://w:1: refused" in (
        display.text_table([snap])
    )
    assert "up on 1 of 2 Dask workers; worker tcp://w:1: refused" in (
        display.html_table([snap])
    )
    row = view.row(snap, snap.forwards[0], view.Rates(), 0.0)
    assert "up on 1 of 2 Dask workers" in row.what


def test_a_place_is_shared_by_the_processes_of_one_loopback() -> None:
    here = place.here()
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "from nbtunnel.platform import place; print(place.here())",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert child.stdout.strip() == here


def test_without_network_namespaces_a_place_is_the_machine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # macOS and Windows have no /proc: one loopback per machine.
    monkeypatch.setattr(place, "NAMESPACE", "/nonexistent/ns/net")
    import socket

    assert place.here() == socket.gethostname()


def test_importing_nbtunnel_never_imports_distributed() -> None:
    code = (
        "import sys, nbtunnel, nbtunnel.client.manager, nbtunnel.client.handles;"
        "nbtunnel.Tunnel; nbtunnel.WorkerError;"
        "print([m for m in sys.modules if m.split('.')[0] in ('distributed', 'dask')])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_sharing_without_distributed_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "from nbtunnel.client import handles\n"
        "try:\n    handles._dask()\n"
        "except Exception as e:\n    print(type(e).__name__, e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == (
        "MissingDependencyError sharing a tunnel with Dask workers needs"
        " distributed: pip install 'nbtunnel[dask]'"
    )


def test_what_dask_sends_is_the_line_and_the_place_nothing_live() -> None:
    dask = pytest.importorskip("nbtunnel.dask")
    plugin = dask.TunnelPlugin("-i ~/.ssh/id -L 5433:db:5432 u@h", name="db")
    plugin.outcome = WorkerShare("tcp://w:1", "up")
    sent = pickle.loads(pickle.dumps(plugin))
    assert vars(sent) == {
        "line": "-i '~/.ssh/id' -o BatchMode=yes -L 5433:db:5432 u@h",
        "label": "h",
        "name": "db",
        "place": None,  # a line: no forward of the kernel's to use
        "outcome": None,
        "_copy": None,
    }
    named = dask.TunnelPlugin("-L 5433:db:5432 u@h")
    assert re.fullmatch(r"nbtunnel-h-[0-9a-f]{8}", named.name)
    assert dask.TunnelPlugin("-L 5434:db:5432 u@h").name != named.name
    with pytest.raises(TypeError, match=r"takes a Tunnel .* or a line, not int"):
        dask.TunnelPlugin(5433)  # type: ignore[arg-type]
