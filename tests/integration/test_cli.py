"""The nbtunnel command: serves in the foreground until SIGINT, then exits 0."""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rig import clients, procs
from tests.rig.sshd import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "nbtunnel", *args],
        preexec_fn=procs.interruptible,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        # No COLUMNS: the width unknown, each event a whole line.
        env={
            **{k: v for k, v in os.environ.items() if k != "COLUMNS"},
            "PYTHONPATH": str(ROOT),
        },
    )


@contextlib.contextmanager
def _cli(*args: str, stdin: int | None = None) -> Iterator[subprocess.Popen[str]]:
    """The CLI running for the block; killed if it still runs after it."""
    proc = _run(*args, stdin=stdin)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _until(proc: subprocess.Popen[str], text: str) -> str:
    """What the command printed up to the line holding ``text``: piped, a
    line a person reads wraps at 100 columns (its rest indented)."""
    assert proc.stdout is not None
    seen = ""
    while text not in seen:
        line = proc.stdout.readline()
        assert line, seen
        seen += line
    return seen


def _words(text: str) -> str:
    """``text`` with its wrapped lines joined again."""
    return " ".join(text.split())


def _interrupt(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Ctrl-C, and what it printed until it exited."""
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=15)


def test_serves_until_sigint_then_exits_0_with_the_port_closed(sshd, targets) -> None:
    args = [
        *sshd.args(),
        "-N",
        "-L",
        f"0:{targets.host}:{targets.echo}",
        sshd.destination,
    ]
    with _cli(*args) as proc:
        assert proc.stdout is not None
        first = _until(proc, "press Ctrl-C to stop")
        match = re.match(r"forwarding -L this machine 127\.0\.0\.1:(\d+)", first)
        assert match, first
        port = int(match.group(1))
        assert "the server connects to" in _words(first)
        assert first.endswith("\npress Ctrl-C to stop\n"), first
        assert clients.echo_roundtrip("127.0.0.1", port, b"cli", 10) == b"cli"
        assert "connection" in proc.stdout.readline()
        out, err = _interrupt(proc)
    assert proc.returncode == 0, err
    assert "stopped" in out
    assert clients.port_is_closed("127.0.0.1", port)


def test_bad_line_exits_2_with_the_bad_part_quoted() -> None:
    proc = _run("-L", "9000:db", "user@host")
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "'9000:db'" in err
    assert "-L [bind_address:]port:host:hostport" in err


def test_connect_failure_exits_1(sshd, targets) -> None:
    port = free_port()
    proc = _run(
        "-p", str(port), "-L", f"0:{targets.host}:{targets.echo}", "u@127.0.0.1"
    )
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "refused" in err


def test_help_and_version() -> None:
    proc = _run("--help")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "usage: nbtunnel" in out
    proc = _run("--version")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out.startswith("nbtunnel ")


def test_remote_forward_prints_the_allocated_port_as_ssh_does(sshd, here) -> None:
    with _cli(
        *sshd.args(), "-R", f"127.0.0.1:0:127.0.0.1:{here.echo}", sshd.destination
    ) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.fullmatch(
            rf"Allocated port (\d+) for remote forward to 127\.0\.0\.1:{here.echo}\n",
            first,
        )
        assert match, first
        port = int(match.group(1))
        rest = _until(proc, "press Ctrl-C")
        said = f"forwarding -R the server 127.0.0.1:{port} → this machine connects to"
        assert _words(rest).startswith(said), rest
        # The URL to give people, and why only the server reaches it.
        host = sshd.destination.rpartition("@")[2]
        share = rest[rest.index("\nshare ") + 1 :]
        assert share.startswith(f"share http://{host}:{port}/"), share
        assert "GatewayPorts" in share
        got = clients.on_server(sshd, "echo", "127.0.0.1", port, 1000)
        assert got == {"ok": True}
        _out, err = _interrupt(proc)
    assert proc.returncode == 0, err


def test_asks_about_an_unknown_host_on_a_terminal(
    sshd, targets, tmp_path: Path
) -> None:
    import pty

    known = tmp_path / "kh"
    args = [
        "-p", str(sshd.port), "-i", str(sshd.client_key),
        "-o", f"UserKnownHostsFile={known}",
        "-L", f"0:{targets.host}:{targets.echo}", sshd.destination,
    ]  # fmt: skip
    main, tty = pty.openpty()
    try:
        with _cli(*args, stdin=tty) as proc:
            os.close(tty)
            assert proc.stderr is not None
            seen = b""
            while b"(yes/no/[fingerprint])?" not in seen:
                chunk = os.read(proc.stderr.fileno(), 4096)  # the question, on stderr
                assert chunk, seen
                seen += chunk
            os.write(main, b"yes\n")
            first = _until(proc, "press Ctrl-C to stop")
            assert first.startswith("forwarding -L this machine"), first
            _interrupt(proc)
    finally:
        os.close(main)
    assert proc.returncode == 0
    assert known.exists()


def test_ctrl_c_while_connecting_exits_130(isolated) -> None:
    # An address that drops every packet: the connect is still waiting.
    with _cli("-L", "0:localhost:1", f"nobody@{isolated.silent_addr}") as proc:
        time.sleep(1.0)
        assert proc.poll() is None
        _out, err = _interrupt(proc)
    assert proc.returncode == 130
    assert "interrupted before the forwards were up" in err
    assert "Traceback" not in err


def test_says_when_the_connection_drops_and_comes_back(fresh_sshd, targets) -> None:
    server = fresh_sshd
    with _cli(
        *server.args(), "-L", f"0:{targets.host}:{targets.echo}", server.destination
    ) as proc:
        assert proc.stdout is not None
        port = int(re.findall(r"127\.0\.0\.1:(\d+)", _until(proc, "press Ctrl-C"))[0])
        server.restart()
        back = _until(proc, "reconnected after")
        assert back.startswith("tunnel "), back
        assert "reconnecting: the SSH connection to" in _words(back), back
        assert re.search(r"^reconnected after [0-9.]+ s \(1 try\)$", back, re.M), back
        assert proc.stdout.readline().endswith(" up\n")
        assert (
            clients.echo_roundtrip("127.0.0.1", port, b"cli again", 10) == b"cli again"
        )
        _, err = _interrupt(proc)
    assert proc.returncode == 0, err


class _Quiet(http.server.BaseHTTPRequestHandler):
    # A status line and headers even for a request line it cannot read
    # (ssh's banner), as web servers answer today.
    default_request_version = "HTTP/1.0"

    def log_message(self, format: str, *args: object) -> None:
        pass  # the test's stderr is not the web server's log


@contextlib.contextmanager
def _web_server() -> Iterator[int]:
    """Python's own web server on loopback: it answers ssh's banner with
    an HTTP error page, then closes."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def _silent_server() -> Iterator[int]:
    """A server that accepts every connection and never says a word."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(5)
        for conn in held:
            conn.close()


FORWARD = ("-L", "0:localhost:1", "nobody@127.0.0.1")


def _not_ssh(port: int, *options: str) -> tuple[int, str, str, float]:
    """The nbtunnel command (the console script) against ``port``: its exit
    status, stdout, stderr and how long it took."""
    cli = Path(sys.executable).with_name("nbtunnel")
    began = time.monotonic()
    ran = subprocess.run(
        [str(cli), "-o", "BatchMode=yes", *options, "-p", str(port), *FORWARD],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    return ran.returncode, ran.stdout, ran.stderr, time.monotonic() - began


def _one_line(err: str, out: str) -> str:
    """The one line the command said (no traceback, no paramiko log)."""
    assert "Traceback" not in err + out and "Exception" not in err + out, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("nbtunnel: ")
    assert out == "", out
    return lines[0]


def test_a_web_server_is_said_in_one_line() -> None:
    with _web_server() as port:
        status, out, err, seconds = _not_ssh(port)
    print(f"web server: exit {status} after {seconds:.2f} s: {err.strip()}")
    assert status == 1
    line = _one_line(err, out)
    assert f"127.0.0.1 port {port} did not answer as an SSH server" in line
    assert seconds < 10


@pytest.mark.parametrize(
    ("options", "limit"),
    [
        (("-o", "ConnectTimeout=3"), 3.0),
        pytest.param((), 15.0, marks=pytest.mark.slow, id="default"),
    ],
)
def test_a_server_that_never_speaks_is_said_in_one_line_within_the_timeout(
    options: tuple[str, ...], limit: float
) -> None:
    with _silent_server() as port:
        status, out, err, seconds = _not_ssh(port, *options)
    print(
        f"silent server {options}: exit {status} after {seconds:.2f} s: {err.strip()}"
    )
    assert status == 1
    line = _one_line(err, out)
    assert f"127.0.0.1 port {port} did not answer as an SSH server" in line
    assert f"no SSH banner within {limit:g} s" in line
    # The limit, plus the command's own start (about a second here).
    assert limit <= seconds < limit + 5 and seconds <= 20
