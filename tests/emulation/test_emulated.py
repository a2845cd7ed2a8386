"""nbtunnel as on macOS and Windows, emulated on Linux (see tests/emulation/__init__.py).

The demo, and real -L/-R/-D forwards through the rig's sshd, run in a
process started under the emulation; the engine process it starts runs
emulated too (each emulated process leaves a mark, checked here, so these
tests cannot pass on an unemulated run).  Code that switches on
``sys.platform`` is not covered: the emulation keeps ``linux`` there.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.rig import clients
from tests.rig.data import expected_sha256

from . import ROOT, TARGETS, emulated_env

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="the emulation rewrites Linux's socket options; real machines run the rest",
)

DRIVE = Path(__file__).resolve().parent / "drive.py"
BYTES = 4 * 1024 * 1024
MiB = 1024 * 1024


def _marks(folder: Path) -> dict[int, str]:
    return {int(p.name): p.read_text() for p in folder.iterdir()}


class _Lines:
    """A process's stdout lines, with a timeout on each, and its stderr,
    each read by a thread of its own (neither pipe may fill up)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._stderr: list[str] = []
        assert proc.stdout is not None and proc.stderr is not None
        stdout, stderr = proc.stdout, proc.stderr

        def read() -> None:
            for line in stdout:
                self._lines.put(line)
            self._lines.put("")

        self._threads = [
            threading.Thread(target=read, daemon=True),
            threading.Thread(target=lambda: self._stderr.append(stderr.read())),
        ]
        for thread in self._threads:
            thread.start()

    def next(self, timeout: float) -> str:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            return ""

    def stderr(self) -> str:
        """All of stderr, once the process has ended."""
        for thread in self._threads:
            thread.join(10)
        return "".join(self._stderr)


def _on_server(sshd: Any, *args: str | int) -> dict[str, object]:
    try:
        return clients.on_server(sshd, *args, timeout=60)
    except AssertionError as exc:  # the probe failed: keep it as the result
        return {"error": str(exc)}


def _drive_forwards(
    target: str, sshd: Any, targets: Any, here: Any, tmp: Path
) -> dict[str, Any]:
    """Runs drive.py's ``forwards`` under the emulation, using its -R
    forwards from the server side meanwhile; everything it saw."""
    marks, home = tmp / "marks", tmp / "home"
    marks.mkdir()
    home.mkdir()
    line = sshd.line(
        "-L",
        f"0:{targets.host}:{targets.echo}",
        "-L",
        f"0:{targets.host}:{targets.sink}",
        "-L",
        f"0:{targets.host}:{targets.source}",
        "-D",
        "0",
        "-R",
        f"127.0.0.1:0:127.0.0.1:{here.sink}",
        "-R",
        f"127.0.0.1:0:127.0.0.1:{here.http}",
    )
    config = {
        "line": line,
        "bytes": BYTES,
        "target_host": "localhost",
        "echo": targets.echo,
        "source": targets.source,
    }
    result: dict[str, Any] = {"marks": {}, "report": None, "stats": None}
    with subprocess.Popen(
        [sys.executable, str(DRIVE), "forwards", json.dumps(config)],
        env=emulated_env(target, marks=marks, home=home),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=home,
    ) as proc:
        result["pid"] = proc.pid
        lines = _Lines(proc)
        first = lines.next(60)
        if first:
            report = result["report"] = json.loads(first)
            sink_port, http_port = report["remote_ports"]
            result["push"] = _on_server(sshd, "push", "127.0.0.1", sink_port, BYTES)
            result["http"] = _on_server(
                sshd, "http", "127.0.0.1", http_port, f"/bytes/{BYTES}"
            )
            assert proc.stdin is not None
            proc.stdin.write("\n")
            proc.stdin.flush()
            stats = lines.next(30)
            result["stats"] = json.loads(stats)["stats"] if stats else None
        else:
            proc.kill()  # it hung before its report
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
            result["stderr"] = lines.stderr()
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            result["stderr"] = "(did not exit within 30 s)\n" + lines.stderr()
        result["returncode"] = proc.returncode
    result["marks"] = _marks(marks)
    return result


@pytest.fixture(scope="module")
def driven(
    sshd: Any, targets: Any, here: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], dict[str, Any]]]:
    """drive.py's forwards run, once per emulated OS for the whole module."""
    done: dict[str, dict[str, Any]] = {}

    def get(target: str) -> dict[str, Any]:
        if target not in done:
            tmp = tmp_path_factory.mktemp(f"emulated-{target}")
            done[target] = _drive_forwards(target, sshd, targets, here, tmp)
        return done[target]

    yield get


def _report(run: dict[str, Any]) -> dict[str, Any]:
    """The run's first reply; fails with its stderr when there is none."""
    if run["report"] is None:
        pytest.fail(
            f"drive.py gave no report (exit {run['returncode']}):\n{run['stderr']}"
        )
    report: dict[str, Any] = run["report"]
    return report


@pytest.mark.integration
@pytest.mark.parametrize("target", TARGETS)
def test_the_script_and_its_engine_run_emulated(
    driven: Callable[[str], dict[str, Any]], target: str
) -> None:
    run = driven(target)
    report = _report(run)
    facts = report["facts"]
    assert facts["emulated"] == target
    if target == "macos":
        assert not facts["TCP_QUICKACK"] and not facts["TCP_KEEPIDLE"]
        assert facts["AF_UNIX"] and facts["termios"]
    else:
        assert not facts["AF_UNIX"] and not facts["MSG_DONTWAIT"]
        assert not facts["termios"]
    # The script and the engine process it started both ran emulated.
    assert run["marks"].get(run["pid"]) == target
    assert report["engine_pid"] != run["pid"]
    assert run["marks"].get(report["engine_pid"]) == target


@pytest.mark.integration
@pytest.mark.parametrize("target", TARGETS)
def test_local_forwards_carry_data_both_ways(
    driven: Callable[[str], dict[str, Any]], target: str
) -> None:
    local = _report(driven(target))["local"]
    assert local["echo"] == {
        "sent": BYTES,
        "received": BYTES,
        "ok": True,
        "error": None,
    }
    assert local["sink"] == {"sent": BYTES, "received": BYTES, "ok": True}
    assert local["source"] == {"wanted": BYTES, "received": BYTES, "ok": True}


@pytest.mark.integration
@pytest.mark.parametrize("target", TARGETS)
def test_dynamic_forward_carries_data_both_ways(
    driven: Callable[[str], dict[str, Any]], target: str
) -> None:
    dynamic = _report(driven(target))["dynamic"]
    assert dynamic["echo"]["ok"] and dynamic["echo"]["received"] == BYTES
    assert dynamic["source"] == {"wanted": BYTES, "received": BYTES, "ok": True}


@pytest.mark.integration
@pytest.mark.parametrize("target", TARGETS)
def test_remote_forwards_carry_data_both_ways(
    driven: Callable[[str], dict[str, Any]], target: str
) -> None:
    run = driven(target)
    _report(run)
    # Pushed from the server to this machine's sink, and fetched by the
    # server from this machine's web service.
    assert run["push"] == {"count": BYTES, "sha256": expected_sha256(BYTES)}
    assert run["http"] == {
        "status": 200,
        "length": BYTES,
        "sha256": expected_sha256(BYTES),
    }
    stats = run["stats"]
    assert stats is not None, run["stderr"]
    sink, http = stats[4], stats[5]
    assert sink["kind"] == http["kind"] == "remote"
    assert sink["to_target"] == BYTES and sink["failed"] == 0
    assert http["from_target"] > BYTES and http["failed"] == 0


@pytest.mark.integration
@pytest.mark.parametrize("target", TARGETS)
def test_the_script_ends_cleanly(
    driven: Callable[[str], dict[str, Any]], target: str
) -> None:
    run = driven(target)
    assert run["returncode"] == 0, run["stderr"]
    assert "Traceback" not in run["stderr"], run["stderr"]
    for forward in run["stats"] or []:
        assert forward["last_error"] is None, forward


@pytest.mark.integration
@pytest.mark.parametrize("target", TARGETS)
def test_where_nothing_says_who_connects_the_note_says_so(
    driven: Callable[[str], dict[str, Any]], target: str
) -> None:
    # OwnerOnly cannot check there: every local user can connect, as before,
    # and each -L/-D says so once (its note); the -R are not concerned.
    for forward in driven(target)["stats"] or []:
        note = forward["note"] or ""
        if forward["kind"] in ("local", "dynamic"):
            assert note.startswith("any user of this machine can connect here"), note
            assert "OwnerOnly cannot check" in note
        else:
            assert "any user" not in note


@pytest.mark.integration
def test_windows_listeners_keep_their_port(
    driven: Callable[[str], dict[str, Any]],
) -> None:
    """On Windows, SO_REUSEADDR lets another socket bind a listener's port
    and take its connections; a listener must use SO_EXCLUSIVEADDRUSE."""
    steal = _report(driven("windows"))["steal"]
    assert steal == {"local": False, "dynamic": False}


@pytest.mark.parametrize("target", TARGETS)
def test_the_demo_exits_0(tmp_path: Path, target: str) -> None:
    marks, home = tmp_path / "marks", tmp_path / "home"
    marks.mkdir()
    home.mkdir()
    with subprocess.Popen(
        [sys.executable, "-m", "nbtunnel", "demo", "--size", "8"],
        env=emulated_env(target, marks=marks, home=home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=home,
    ) as demo:
        try:
            out, err = demo.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            demo.kill()
            out, err = demo.communicate()
            pytest.fail(f"the demo did not end within 60 s:\n{out}\n{err}")
    assert demo.returncode == 0, out[-3000:] + err
    assert err == ""
    assert "200 'Hello from the private service'" in out
    assert "8388608 bytes in" in out and "sha256 matches" in out
    assert "-> 200 'Hello from your dashboard'" in out
    assert "through socks5h://127.0.0.1:" in out
    assert "done in" in out
    # The demo and its engine process, both emulated.
    assert demo.pid in _marks(marks)
    assert len(set(_marks(marks).values()) | {target}) == 1
    assert len(_marks(marks)) >= 2, "the engine process did not run emulated"


def _one_clear_line(message: str) -> None:
    assert "Traceback" not in message, message
    assert "\n" not in message.strip(), message
    assert "not supported" in message, message


@pytest.mark.integration
def test_windows_refuses_unix_socket_forwards_through_the_api(
    sshd: Any, targets: Any, here: Any, tmp_path: Path
) -> None:
    marks, home = tmp_path / "marks", tmp_path / "home"
    marks.mkdir()
    home.mkdir()
    here_unix = sshd.line("-R", f"127.0.0.1:0:{here.unix_echo}")
    listen_unix = sshd.line("-L", f"{tmp_path}/l.sock:{targets.host}:{targets.echo}")
    server_unix = sshd.line("-L", f"0:{targets.unix_echo}")
    config = {"lines": [here_unix, listen_unix, server_unix], "echo_through_first": 1}
    proc = subprocess.run(
        [sys.executable, str(DRIVE), "refuse", json.dumps(config)],
        env=emulated_env("windows", marks=marks, home=home),
        capture_output=True,
        text=True,
        timeout=90,
        cwd=home,
    )
    assert proc.returncode == 0, proc.stderr
    *results, tail = json.loads(proc.stdout)
    assert _marks(marks).get(tail["engine_pid"]) == "windows"
    by_line = {r["line"]: r for r in results}
    # A unix socket on this machine: Windows has none to offer.
    for line in (here_unix, listen_unix):
        result = by_line[line]
        assert result["outcome"] == "refused", result
        _one_clear_line(result["message"])
    assert not (tmp_path / "l.sock").exists()
    # A unix socket on the server needs none here: it may work, or be
    # refused as clearly, but never crash.
    result = by_line[server_unix]
    if result["outcome"] == "works":
        assert result["echo"]["ok"], result
    else:
        assert result["outcome"] == "refused", result
        _one_clear_line(result["message"])


@pytest.mark.integration
def test_windows_cli_refuses_a_unix_socket_listener_in_one_line(
    sshd: Any, targets: Any, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    words = [*sshd.args(), "-L", f"{tmp_path}/l.sock:{targets.host}:{targets.echo}"]
    with subprocess.Popen(
        [sys.executable, "-m", "nbtunnel", *words, sshd.destination],
        env=emulated_env("windows", home=home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=home,
    ) as cli:
        try:
            out, err = cli.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            cli.kill()
            out, err = cli.communicate()
            pytest.fail(f"the forward was not refused; it ran:\n{out}\n{err}")
    assert cli.returncode in (1, 2), out + err
    _one_clear_line(err)
    assert err.startswith("nbtunnel: ")


_HARNESS_CHECK = """
import json, os, select, socket, sys

def refused(call):
    try:
        call()
    except OSError:
        return True
    return False

def co_bind(first_option):
    with socket.socket() as first, socket.socket() as second:
        first.setsockopt(socket.SOL_SOCKET, first_option, 1)
        first.bind(("127.0.0.1", 0))
        first.listen()
        second.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        return not refused(lambda: second.bind(first.getsockname()))

r, w = os.pipe()
with socket.socket() as s:
    facts = {
        "emulated": sys._nbtunnel_emulated,
        "select_pipe_refused": refused(lambda: select.select([r], [], [], 0)),
        "quickack_number_refused": refused(
            lambda: s.setsockopt(socket.IPPROTO_TCP, 12, 1)
        ),
        "linux_sol_socket_refused": refused(lambda: s.setsockopt(1, 2, 1)),
        "reuseaddr_shares_port": co_bind(socket.SO_REUSEADDR),
    }
exclusive = getattr(socket, "SO_EXCLUSIVEADDRUSE", None)
if exclusive is not None:
    facts["exclusive_shares_port"] = co_bind(exclusive)
print(json.dumps(facts))
"""


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (
            "windows",
            {
                "emulated": "windows",
                "select_pipe_refused": True,
                "quickack_number_refused": True,
                "linux_sol_socket_refused": True,
                "reuseaddr_shares_port": True,
                "exclusive_shares_port": False,
            },
        ),
        (
            "macos",
            {
                "emulated": "macos",
                "select_pipe_refused": False,
                "quickack_number_refused": True,
                "linux_sol_socket_refused": True,
                "reuseaddr_shares_port": False,
            },
        ),
    ],
)
def test_the_emulation_itself(target: str, expected: dict[str, object]) -> None:
    """The harness: what the tests above rely on it to reproduce."""
    proc = subprocess.run(
        [sys.executable, "-c", _HARNESS_CHECK],
        env=emulated_env(target),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == expected
