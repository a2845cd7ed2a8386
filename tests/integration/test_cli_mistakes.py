"""The nbtunnel command given a mistake: one line saying what is wrong and
what was probably meant, no traceback, nothing left open; a host name DNS
cannot carry is said as such (never "internal error ... UnicodeError"),
whether it is the destination, a jump host or a -L target."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from nbtunnel import Manager

from tests.rig import clients, procs

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LONG_NAME = "a" * 70 + ".example.com"
PROBLEM = "a label is longer than 63 characters"


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "nbtunnel", *args],
        preexec_fn=procs.interruptible,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _run(*args: str) -> tuple[int, str]:
    """The command's exit status and the one line it said on stderr."""
    proc = _start(*args)
    out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err + out and "internal error" not in err, err
    assert out == "", out
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("nbtunnel: ")
    return proc.returncode, lines[0].removeprefix("nbtunnel: ")


def _closed_unserved(port: int) -> None:
    """A connection to ``port`` is closed without a byte (or reset)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        contextlib.suppress(ConnectionResetError),
    ):
        assert sock.recv(10) == b""


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["-o", "StrictHostKeyCheking=no", "-L", "0:db:5432", "host"],
            "-o 'StrictHostKeyCheking': nbtunnel has no such option; "
            "did you mean StrictHostKeyChecking?",
        ),
        (
            ["-o", "StrictHostKeyChecking=yse", "-L", "0:db:5432", "host"],
            "option 'StrictHostKeyChecking' does not take 'yse': did you mean yes? "
            "(use one of yes, no, accept-new, ask, off)",
        ),
        (
            # A real ssh option: said so, with no guess of another meaning.
            ["-o", "ConnectionAttempts=3", "-L", "0:db:5432", "host"],
            "-o 'ConnectionAttempts': an ssh option nbtunnel does not support "
            "(yet); the supported ones: nbtunnel --help (%tunnel? in a notebook)",
        ),
        (["-d", "1080", "host"], "unknown option '-d'; did you mean -D?"),
        (["--hepl"], "unknown option '--hepl'; did you mean --help?"),
        (
            ["--no-reconect", "-L", "0:db:5432", "host"],
            "unknown option '--no-reconect'; did you mean --no-reconnect?",
        ),
        (["dmeo"], "unknown command 'dmeo'; did you mean nbtunnel demo?"),
        (
            ["-R", f"0:{LONG_NAME}:80", "host"],
            f"bad -R spec '0:{LONG_NAME}:80': host name '{LONG_NAME}' "
            f"is not valid: {PROBLEM}",
        ),
    ],
)
def test_a_mistake_is_one_line_with_what_was_meant(args: list[str], said: str) -> None:
    status, line = _run(*args)
    assert status == 2
    assert line == said


def test_a_destination_dns_cannot_carry_is_named(sshd, targets) -> None:
    forward = ["-L", f"0:{targets.host}:{targets.echo}"]
    status, line = _run(*sshd.args(), *forward, f"{sshd.user}@{LONG_NAME}")
    assert status == 1
    assert line.startswith(f"host name '{LONG_NAME}' is not valid: {PROBLEM}; ")
    # The same name as a jump host.
    status, line = _run(*sshd.args(), "-J", LONG_NAME, *forward, sshd.destination)
    assert status == 1
    assert line.startswith(f"jump host 1 (root@{LONG_NAME}:22): host name ")
    assert f"is not valid: {PROBLEM}" in line


def test_a_long_alias_with_a_host_name_still_connects(sshd, targets) -> None:
    # Only the name that is looked up must suit DNS: an alias need not.
    args = [*sshd.args(), "-o", f"HostName={sshd.host}"]
    forward = ["-L", f"0:{targets.host}:{targets.echo}"]
    proc = _start(*args, *forward, f"{sshd.user}@{LONG_NAME}")
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"this machine 127\.0\.0\.1:(\d+)", first)
        assert match, first + proc.stderr.read()  # type: ignore[union-attr]
        port = int(match.group(1))
        assert clients.echo_roundtrip("127.0.0.1", port, b"alias", 10) == b"alias"
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err


def test_a_target_dns_cannot_carry_fails_each_connection_in_words(sshd) -> None:
    # The server looks a -L target up, per connection: each one is said and
    # counted, and the forward stays up for the next.
    forward = ["-L", f"0:{LONG_NAME}:80"]
    proc = _start(*sshd.args(), *forward, sshd.destination)
    try:
        assert proc.stdout is not None
        first = ""  # piped, the forwarding line wraps at 100 columns
        while "press Ctrl-C to stop" not in first:
            line = proc.stdout.readline()
            assert line, first
            first += line
        match = re.search(r"this machine 127\.0\.0\.1:(\d+)", first)
        assert match, first
        port = int(match.group(1))
        for _ in range(2):
            _closed_unserved(port)
            line = proc.stdout.readline()
            # Each connection's record stays one line, however long.
            assert line.startswith(
                f"connection failed: the server could not connect to "
                f"{LONG_NAME}:80 ({PROBLEM}) as the target: "
            ), line
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err and "internal error" not in out + err
    assert clients.port_is_closed("127.0.0.1", port)


def test_each_connection_to_such_a_target_is_counted(sshd) -> None:
    manager = Manager(engine="inline")
    try:
        tunnel = manager.open(sshd.line("-L", f"0:{LONG_NAME}:80"))
        (forward,) = tunnel.forwards
        for _ in range(3):
            _closed_unserved(forward.listen_port or 0)
        # Each one counted, and closed: none is left open.
        stats = clients.wait_until(
            lambda: (
                (s := forward.stats).connections_open == 0
                and s.connections_failed == 3
                and s
            ),
            10,
        )
        assert stats.connections_total == 3
        assert f"{LONG_NAME}:80 ({PROBLEM})" in str(stats.last_error)
        assert forward.state == "up" and tunnel.state == "up"
    finally:
        manager.close()
