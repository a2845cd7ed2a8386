"""Engine events in the caller: logged under "nbtunnel", never printed."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest
from nbtunnel.client import display
from nbtunnel.client.events import Events
from nbtunnel.engine.client import exit_reason


def test_engine_log_records_land_under_nbtunnel(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = Events()  # a manager's engine event handler
    seen: list[dict] = []
    events.subscribe(seen.append)
    with caplog.at_level(logging.DEBUG, logger="nbtunnel"):
        events(
            {
                "event": "log",
                "level": logging.ERROR,
                "logger": "paramiko.transport",
                "message": "Socket exception: Connection reset by peer",
            }
        )
    record = caplog.records[-1]
    assert record.name == "nbtunnel.engine.paramiko.transport"
    assert record.levelno == logging.ERROR
    assert seen and seen[0]["event"] == "log"
    with caplog.at_level(logging.DEBUG, logger="nbtunnel"):
        events(
            {
                "event": "log",
                "level": logging.WARNING,
                "logger": "nbtunnel.forward",
                "message": "accept failed",
            }
        )
    assert caplog.records[-1].name == "nbtunnel.engine.forward"


def test_a_failing_listener_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = Events()  # a manager's engine event handler
    seen: list[dict] = []

    def broken(message: dict) -> None:
        raise RuntimeError("listener bug")

    events.subscribe(broken)
    events.subscribe(seen.append)
    events({"event": "state", "tunnel": 1, "state": "up"})
    assert seen == [{"event": "state", "tunnel": 1, "state": "up"}]
    assert "listener failed" in caplog.text


def test_nothing_reaches_stderr_without_logging_configured() -> None:
    # Python prints unhandled WARNING+ records to stderr ("last resort");
    # in a kernel that lands in a cell.  The package's NullHandler stops it.
    code = textwrap.dedent(
        """
        import logging
        from nbtunnel.client.events import Events
        Events()(
            {"event": "log", "level": logging.ERROR, "logger": "paramiko.transport",
             "message": "Socket exception"}
        )
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("code", "clause", "signal"),
    [
        (
            -9,
            "it was killed by SIGKILL (signal 9), perhaps for lack of memory",
            "SIGKILL",
        ),
        (-15, "it was killed by SIGTERM (signal 15)", "SIGTERM"),
        (3, "it exited with status 3", None),
        (0, "it exited with status 0", None),
    ],
)
def test_how_the_engine_ended(code: int, clause: str, signal: str | None) -> None:
    # Lack of memory is suggested for SIGKILL alone: what the OOM killer sends.
    assert exit_reason(code) == (clause, signal)


def test_the_engines_death_is_logged_and_said_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The engine cannot log its own death: the caller's side does, once.
    events = Events()
    seen: list[dict] = []
    events.subscribe(seen.append)
    why = "the nbtunnel engine (pid 7) is gone: it was killed by SIGKILL (signal 9)"
    message = {"event": "engine_exited", "pid": 7, "status": -9, "error": why}
    with caplog.at_level(logging.WARNING, logger="nbtunnel"):
        events(message)
    assert [r.getMessage() for r in caplog.records] == [why]
    assert caplog.records[0].levelno == logging.WARNING
    assert seen == [message]
    assert display.event_line(message) == why
