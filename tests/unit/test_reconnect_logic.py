"""The pure parts of reconnecting: back-off, the settings, the link's outage wait,
and the event lines."""

from __future__ import annotations

import threading
import time

import pytest
from nbtunnel import ConnectError, SpecError
from nbtunnel.client.display import event_line
from nbtunnel.engine.link import Link
from nbtunnel.engine.reconnect import FIRST_DELAY, backoff
from nbtunnel.grammar.spec import parse
from nbtunnel.settings.resolve import resolve


def test_backoff_doubles_up_to_the_cap_with_half_of_it_random() -> None:
    for failures in range(12):
        base = min(30.0, FIRST_DELAY * 2**failures)
        waits = [backoff(failures, 30) for _ in range(200)]
        assert all(base / 2 <= w <= base for w in waits)
        assert max(waits) - min(waits) > base / 10  # jittered
    assert backoff(1000, 30) <= 30


def test_a_zero_cap_still_waits_a_little() -> None:
    assert all(FIRST_DELAY / 2 <= backoff(n, 0) <= FIRST_DELAY for n in range(5))


def _settings(line: str):
    return resolve(parse(line), home="/nonexistent")


def test_keepalives_and_reconnect_are_on_by_default() -> None:
    s = _settings("-F none -L 1:h:2 host")
    assert (s.server_alive_interval, s.server_alive_count_max) == (15, 3)
    assert s.reconnect and s.reconnect_max_delay == 30 and s.reconnect_attempts == 0


def test_the_reconnect_options() -> None:
    s = _settings(
        "-F none -o ServerAliveInterval=0 -o ServerAliveCountMax=1 "
        "-o ReconnectMaxDelay=5 -o ReconnectAttempts=4 -L 1:h:2 host"
    )
    assert (s.server_alive_interval, s.server_alive_count_max) == (0, 1)
    assert (s.reconnect_max_delay, s.reconnect_attempts) == (5, 4)
    assert not _settings("-F none -o reconnect=NO -L 1:h:2 host").reconnect


def test_no_reconnect_flag_wins_and_round_trips() -> None:
    spec = parse("-o Reconnect=yes --no-reconnect -L 1:h:2 host")
    assert spec.option("Reconnect") == "no"
    assert parse(spec.text) == spec
    assert not resolve(spec, home="/nonexistent").reconnect


@pytest.mark.parametrize(
    ("option", "bad"),
    [
        ("Reconnect", "maybe"),
        ("ReconnectAttempts", "-1"),
        ("ReconnectMaxDelay", "soon"),
        ("ServerAliveCountMax", "x"),
    ],
)
def test_bad_reconnect_options_name_the_bad_part(option: str, bad: str) -> None:
    with pytest.raises(SpecError, match=f"'{bad}'"):
        parse(f"-o {option}={bad} -L 1:h:2 host")


def test_other_long_flags_are_still_refused() -> None:
    with pytest.raises(SpecError, match="--reconnect"):
        parse("--reconnect -L 1:h:2 host")


class _Opener:
    """Stands in for a Connection: records the opens it was asked for."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, int]] = []

    def open_tcpip(self, host: str, port: int, origin, timeout: float) -> str:
        self.opened.append((host, port))
        return "channel"


def test_a_link_in_an_outage_makes_an_open_wait_for_the_new_connection() -> None:
    link = Link("u@h:22", outage_wait=5)
    link.down("the server closed the connection")
    new = _Opener()
    got: list[object] = []
    waiting = threading.Thread(
        target=lambda: got.append(link.open_tcpip("db", 5432, ("127.0.0.1", 1), 1))
    )
    waiting.start()
    time.sleep(0.2)
    assert not got
    link.up(new)  # type: ignore[arg-type]
    waiting.join(5)
    assert got == ["channel"] and new.opened == [("db", 5432)]


def test_a_link_in_a_long_outage_refuses_after_its_wait() -> None:
    link = Link("u@h:22", outage_wait=0.3)
    link.down("the server closed the connection")
    started = time.monotonic()
    with pytest.raises(ConnectError, match=r"u@h:22 is down \(the server closed"):
        link.open_tcpip("db", 5432, ("127.0.0.1", 1), 1)
    assert 0.25 <= time.monotonic() - started < 2


def test_a_closed_link_refuses_at_once_and_wakes_whoever_waits() -> None:
    link = Link("u@h:22", outage_wait=30)
    link.down("gone")
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            link.open_streamlocal("/run/x.sock", 1)
        except ConnectError as exc:
            errors.append(exc)

    waiting = threading.Thread(target=wait)
    waiting.start()
    time.sleep(0.1)
    link.close("the tunnel is stopped")
    waiting.join(2)
    assert not waiting.is_alive() and "the tunnel is stopped" in str(errors[0])
    assert "reconnecting" not in str(errors[0])


def test_the_reconnect_events_read_as_sentences() -> None:
    assert event_line(
        {"event": "reconnect_failed", "attempt": 2, "error": "refused", "retry_in": 1.5}
    ) == ("reconnect try 2 failed: refused; next in 1.5 s")
    assert (
        event_line({"event": "reconnected", "tries": 1, "seconds": 0.42})
        == "reconnected after 0.4 s (1 try)"
    )
    assert "(3 tries)" in str(event_line({"event": "reconnected", "tries": 3}))
