"""The pieces of -v, -vv and -vvv that need no server: the trace's levels, the
ssh_config lines it says, the log records the caller makes of it, and
paramiko's -vvv channel (the whole of it against sshd: test_verbose.py in
tests/integration)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import paramiko
import pytest
from nbtunnel.client.events import Events, verbose_line
from nbtunnel.ssh.paramiko_log import CHANNEL, Route, lent
from nbtunnel.ssh.trace import QUIET, Trace

from .test_sshconfig import _look

Said = list[tuple[int, str, str]]


def _trace(verbosity: int) -> tuple[Trace, Said]:
    said: Said = []
    return Trace(verbosity, lambda *line: said.append(line)), said


def test_a_trace_says_its_levels_and_no_more() -> None:
    trace, said = _trace(2)
    trace(1, "Connecting to %s port %d.", "h", 22)
    trace(2, "ciphers offered: %s", "a,b")
    trace(3, "never")
    trace.paramiko("not at -vv")
    trace.child("jump host 1: ")(1, "Connection established.")
    assert said == [
        (1, "Connecting to h port 22.", "verbose"),
        (2, "ciphers offered: a,b", "verbose"),
        (1, "jump host 1: Connection established.", "verbose"),
    ]
    assert trace.wants(2) and not trace.wants(3)
    # Without -v, or without anywhere to say it: nothing, and no work.
    assert not QUIET.wants(1) and not Trace(3).wants(1)
    QUIET(1, "%s", "nothing")


def test_a_failing_sink_never_fails_the_step() -> None:
    def broken(level: int, text: str, source: str) -> None:
        raise BrokenPipeError

    Trace(1, broken)(1, "Connection established.")


def test_vvv_says_paramikos_lines() -> None:
    trace, said = _trace(3)
    trace.paramiko("Kex: curve25519-sha256")
    assert said == [(3, "Kex: curve25519-sha256", "paramiko")]


def test_config_notes_say_files_blocks_and_the_options_that_apply(
    tmp_path: Path,
) -> None:
    text = (
        "Host db\n"
        "    User analyst\n"
        "Include nothing-here-*\n"
        "Host *\n"
        "    User fallback\n"
        "    Port 2200\n"
    )
    found = _look(tmp_path, text, "db")
    config = tmp_path / ".ssh" / "config"
    assert found.notes == [
        f"Reading configuration data {config}",
        f"{config} line 1: Applying options for db",
        f"{config} line 2: User analyst",
        f"{config} line 3: include nothing-here-* matched no files",
        f"{config} line 4: Applying options for *",
        # "User fallback" is not said: the first value won.
        f"{config} line 6: Port 2200",
    ]


def _log(**data: object) -> dict[str, object]:
    message = {"event": "log", "logger": "nbtunnel.verbose", "tunnel": 3}
    return {**message, "name": "db", "level": logging.INFO, **data}


def test_the_caller_logs_a_tunnels_lines_with_the_tunnel_and_shows_its_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = Events()
    shown: list[str] = []
    with caplog.at_level(logging.DEBUG, logger="nbtunnel"):
        with events.watch("db", shown.append):
            events(_log(verbosity=1, message="Connection established."))
            events(_log(name="other", tunnel=4, verbosity=1, message="not ours"))
            events(_log(verbosity=2, level=logging.DEBUG, message="channel open"))
        events(_log(verbosity=1, message="after the open"))
    assert shown == ["debug1: Connection established.", "debug2: channel open"]
    first = caplog.records[0]
    assert first.name == "nbtunnel.engine.verbose"
    assert first.getMessage() == "db: Connection established."
    assert (first.tunnel, first.tunnel_name, first.verbosity) == (3, "db", 1)  # type: ignore[attr-defined]
    assert [r.levelno for r in caplog.records] == [
        logging.INFO,
        logging.INFO,
        logging.DEBUG,
        logging.INFO,
    ]
    assert verbose_line({"event": "log", "message": "x"}) is None  # the engine's own
    assert verbose_line({"event": "state"}) is None


def test_vvv_gives_each_connection_a_paramiko_channel_of_its_own(
    capfd: pytest.CaptureFixture[str],
) -> None:
    trace, said = _trace(3)
    before = lent()
    a, b = socket.socketpair()
    try:
        transport = paramiko.Transport(a)
        with Route(transport, trace):
            channel = transport.get_log_channel()
            assert channel.startswith(CHANNEL + ".v")
            assert lent() == before + 1
            transport.logger.error(
                "Exception (client): Error reading SSH protocol banner"
            )
            assert said == [
                (3, "Exception (client): Error reading SSH protocol banner", "paramiko")
            ]
        # Given back: no longer the trace's, never Python's fallback on stderr.
        assert lent() == before
        transport.logger.error("late")
        assert len(said) == 1
        assert capfd.readouterr().err == ""
        other = paramiko.Transport(b)
        with Route(other, _trace(3)[0]):
            assert other.get_log_channel() == channel  # lent out again
        assert lent() == before
    finally:
        a.close()
        b.close()
