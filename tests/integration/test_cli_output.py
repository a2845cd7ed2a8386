"""What the nbtunnel command prints: its help, -V, the usage in errors, a
reader that goes away (``| head -1``), and lines that fit the terminal."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from nbtunnel._version import __version__
from nbtunnel.grammar.flags import ACCEPTED_FORMS, SUPPORTED_OPTIONS

from tests.rig import clients, procs

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _env(columns: int | None) -> dict[str, str]:
    """The environment with COLUMNS as given (None: unset, the width unknown)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = str(ROOT)
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return env


def _run(
    *args: str, columns: int | None = None, stdout: int = subprocess.PIPE
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "nbtunnel", *args],
        preexec_fn=procs.interruptible,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=_env(columns),
    )


@contextlib.contextmanager
def _running(*args: str, columns: int | None = None) -> Iterator[subprocess.Popen[str]]:
    proc = _run(*args, columns=columns)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _ran(*args: str, columns: int | None = None) -> tuple[int, str, str]:
    proc = _run(*args, columns=columns)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def _longest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


@pytest.mark.parametrize("columns", [None, 60])
def test_help_shows_each_flag_with_its_forms_and_examples_within_the_width(
    columns: int | None,
) -> None:
    status, out, err = _ran("--help", columns=columns)
    assert status == 0 and err == ""
    lines = out.splitlines()
    for flag, forms in ACCEPTED_FORMS.items():
        for form in forms:
            entry = f"  {flag} {form}"
            assert any(
                line == entry or line.startswith(entry + "  ") for line in lines
            ), entry
    words = " ".join(out.split()).replace(" \\ ", " ")
    assert ", ".join(SUPPORTED_OPTIONS) in words
    for example in (
        "nbtunnel -J you@bastion.example.com -L 5432:localhost:5432 you@db.internal",
        "nbtunnel -R 8080:localhost:8050 you@shared.example.com",
        "nbtunnel -D 1080 you@gateway.example.com",
        "nbtunnel demo --serve",
    ):
        assert example in words
    assert _longest(out) <= (columns or 100)


def test_errors_show_the_usage_of_nbtunnel() -> None:
    for args in (["-Z", "user@host"], ["-L", "0:db:5432"], ["--bogus", "h"]):
        status, out, err = _ran(*args)
        assert status == 2 and out == ""
        assert "\nusage: nbtunnel [-46CfgNnTVv] [-c cipher_spec]" in err, err
        assert "[ssh]" not in err and "Traceback" not in err


def test_dash_v_prints_the_version_on_stderr_as_ssh_does() -> None:
    for args in (["-V"], ["-NV", "-L", "0:db:5432", "user@host"]):
        status, out, err = _ran(*args)
        assert status == 0, err
        assert out == ""
        assert re.fullmatch(
            rf"nbtunnel {re.escape(__version__)}, paramiko [0-9.]+, "
            r"cryptography [0-9.]+, Python 3\.[0-9.]+\n",
            err,
        ), err
    status, out, _ = _ran("--version")
    assert status == 0 and out == f"nbtunnel {__version__}\n"


@pytest.mark.parametrize(
    "args",
    [
        ["-L", "1:a:2", "h", "--help"],  # after the host, as -V
        ["-vh"],  # in a bundle: ssh prints its usage for -h
        ["-v", "-h", "-L", "1:a:2", "h"],
    ],
)
def test_help_asked_anywhere_among_the_flags_shows_it(args: list[str]) -> None:
    _, expected, _ = _ran("--help")
    status, out, err = _ran(*args)
    assert (status, out, err) == (0, expected, "")


def test_help_after_dashdash_is_no_flag() -> None:
    status, out, err = _ran("-L", "1:a:2", "h", "--", "--help")
    assert status == 2 and out == ""
    assert err == "nbtunnel: nbtunnel runs no remote command: '--help'\n"


def _quiet(err: str) -> None:
    assert "Traceback" not in err and "Exception" not in err, err
    assert "BrokenPipeError" not in err and "Broken pipe" not in err, err


@pytest.mark.parametrize("args", [["--help"], ["demo", "--size", "1"]])
def test_a_reader_gone_at_once_ends_it_quietly(args: list[str]) -> None:
    # `nbtunnel --help | head -1` where head has gone before the first write:
    # the pipe has no reader, so every write fails.
    read, write = os.pipe()
    os.close(read)
    try:
        proc = _run(*args, stdout=write)
    finally:
        os.close(write)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141  # as a shell reports a command SIGPIPE ended
    _quiet(err)


def test_the_demo_ends_quietly_when_its_reader_goes_after_one_line(
    tmp_path: Path,
) -> None:
    with _running("demo", "--size", "1") as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith("nbtunnel demo: ")
        proc.stdout.close()  # as head -1 does
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 141
    _quiet(err)


def test_a_running_forward_ends_quietly_when_its_reader_goes(sshd, targets) -> None:
    args = [*sshd.args(), "-L", f"0:{targets.host}:{targets.echo}", sshd.destination]
    with _running(*args) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        port = int(re.findall(r"127\.0\.0\.1:(\d+)", first)[0])
        proc.stdout.close()  # the reader goes, the forward still up
        assert proc.poll() is None
        # A connection: its event line finds the pipe without a reader, and
        # the command ends, the forward with it.
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            status = proc.wait(timeout=30)
        err = proc.stderr.read()
    assert status == 141
    _quiet(err)
    assert clients.port_is_closed("127.0.0.1", port)


def _fits(text: str, width: int) -> None:
    """Every line within ``width``, but one shell word longer than a line."""
    for line in text.splitlines():
        word = line.strip().removesuffix(" \\")
        assert len(line) <= width or " " not in word, line


@pytest.mark.parametrize("columns", [60, None])
def test_a_remote_forward_and_its_hint_fit_the_width(
    sshd, here, columns: int | None
) -> None:
    args = [*sshd.args(), "-R", f"127.0.0.1:0:127.0.0.1:{here.echo}", sshd.destination]
    with _running(*args, columns=columns) as proc:
        assert proc.stdout is not None
        seen = ""
        while "press Ctrl-C to stop" not in seen:
            line = proc.stdout.readline()
            assert line, seen
            seen += line
    hint = seen[seen.index("share http://") :]
    assert "GatewayPorts clientspecified" in " ".join(hint.split())
    if columns is None:
        # The width unknown: every line within 100 columns.
        assert _longest(seen) <= 100, seen
        assert len(hint.splitlines()) > 2, hint
        assert re.search(r"^forwarding -R the server .*$", seen, re.M), seen
    else:
        assert _longest(seen) <= columns, seen  # the event lines wrapped too


# A -R target nobody looks up until a connection comes: a long name makes
# ssh's "Allocated port" line longer than 100 columns.
LONG_TARGET = "a-dashboard-with-a-rather-long-name.analytics.internal.example.com"


def test_piped_every_line_a_person_reads_is_within_100_columns(
    sshd, targets, here
) -> None:
    args = [
        *sshd.args(),
        "-o",
        "ServerAliveInterval=30",
        "-L",
        f"127.0.0.1:0:{targets.host}:{targets.echo}",
        "-R",
        f"127.0.0.1:0:{LONG_TARGET}:8050",
        "-R",
        f"127.0.0.1:0:127.0.0.1:{here.echo}",
        sshd.destination,
    ]
    with _running(*args) as proc:
        assert proc.stdout is not None
        seen = ""
        while "press Ctrl-C to stop" not in seen:
            line = proc.stdout.readline()
            assert line, seen
            seen += line
        local = int(
            re.findall(r"^forwarding -L this machine 127\.0\.0\.1:(\d+)", seen, re.M)[0]
        )
        with socket.create_connection(("127.0.0.1", local), timeout=10) as sock:
            sock.sendall(b"ping")
            assert sock.recv(4) == b"ping"
        while "\nclosed " not in seen:  # the connection's records, once closed
            line = proc.stdout.readline()
            assert line, seen
            seen += line
    lines = seen.splitlines()
    # The lines scripts read (cli.RECORDS) stay whole, one event a line.
    records = [
        line
        for line in lines
        if line.startswith(("Allocated port ", "connection ", "closed "))
    ]
    allocated = [line for line in records if LONG_TARGET in line]
    assert len(allocated) == 1 and len(allocated[0]) > 100, seen
    assert re.fullmatch(
        rf"Allocated port \d+ for remote forward to {LONG_TARGET}:8050", allocated[0]
    )
    assert any(line.startswith("closed ") for line in records), seen
    # Every other line (forwarding lines, the hint) within 100 columns.
    people = [line for line in lines if line not in records]
    assert sum(line.startswith("forwarding ") for line in people) == 3, seen
    assert max(len(line) for line in people) <= 100, seen
    assert any(len(line) > 90 for line in people), seen  # wrapped, not short


def test_the_demo_fits_a_narrow_terminal(tmp_path: Path) -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "nbtunnel", "demo", "--size", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(60),
        timeout=90,
    )
    assert ran.returncode == 0, ran.stderr
    _fits(ran.stdout, 60)
    # The table as a block per forward, its hint wrapped.
    assert re.search(r"^demo  -L  up \S+  via demo@127\.0\.0\.1$", ran.stdout, re.M)
    assert re.search(r"^  listens on  this machine 127\.0\.0\.1:\d+$", ran.stdout, re.M)
    assert "done in" in ran.stdout
