"""Where paramiko's log of one connection goes: to every -vvv tunnel that holds
a share of it, and only while it does; its channel lent again only once the
connection's thread has ended (the tunnels on one sshd connection:
test_verbose.py in tests/integration)."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator

import paramiko
import pytest
from nbtunnel import ConnectError
from nbtunnel.grammar.spec import parse
from nbtunnel.settings.resolve import resolve
from nbtunnel.ssh.connection import Connection
from nbtunnel.ssh.paramiko_log import CHANNEL, Route, lent
from nbtunnel.ssh.trace import Trace

Said = list[tuple[int, str, str]]


def _trace(verbosity: int) -> tuple[Trace, Said]:
    said: Said = []
    return Trace(verbosity, lambda *line: said.append(line)), said


@pytest.fixture(autouse=True)
def _nothing_left_lent() -> Iterator[None]:
    before = lent()
    yield
    assert lent() == before, "a test left a paramiko channel lent out"


@pytest.fixture
def transport() -> Iterator[paramiko.Transport]:
    a, b = socket.socketpair()
    try:
        yield paramiko.Transport(a)
    finally:
        a.close()
        b.close()


def _messages(said: Said) -> list[str]:
    return [text for _, text, _ in said]


def test_each_vvv_trace_that_hears_gets_the_records_while_it_does(
    transport: paramiko.Transport,
) -> None:
    maker, by_maker = _trace(3)
    sharer, by_sharer = _trace(3)
    quiet, by_quiet = _trace(2)
    with Route(transport, maker) as route:
        transport.logger.debug("one")
        route.hear(sharer)
        route.hear(quiet)  # -vv: not paramiko's lines
        transport.logger.debug("two")
        route.unhear(maker)  # the maker stops; the sharer goes on
        transport.logger.debug("three")
        route.unhear(sharer)
        transport.logger.debug("four")
    assert _messages(by_maker) == ["one", "two"]
    assert _messages(by_sharer) == ["two", "three"]
    assert by_quiet == []


def test_heard_by_none_the_records_go_to_the_shared_channel_at_debug(
    transport: paramiko.Transport, caplog: pytest.LogCaptureFixture
) -> None:
    trace, said = _trace(3)
    with Route(transport) as route:
        # Nobody logs DEBUG and nobody hears: paramiko makes no record at all.
        assert not transport.logger.isEnabledFor(logging.DEBUG)
        route.hear(trace)
        assert transport.logger.isEnabledFor(logging.DEBUG)
        route.unhear(trace)
        assert not transport.logger.isEnabledFor(logging.DEBUG)
        with caplog.at_level(logging.DEBUG, logger="nbtunnel"):
            transport.logger.error("Exception (client): EOFError")
    assert said == []
    # (pytest also hangs its capture on loggers that do not propagate: the
    # one record, seen twice.)
    records = {id(r): r for r in caplog.records if "EOFError" in r.getMessage()}
    [record] = records.values()
    assert (record.name, record.levelno) == (CHANNEL, logging.DEBUG)


def test_a_channel_whose_thread_lives_on_is_never_lent_again(
    transport: paramiko.Transport, capfd: pytest.CaptureFixture[str]
) -> None:
    trace, said = _trace(3)
    route = Route(transport, trace)
    channel = transport.get_log_channel()
    route.end(thread_ended=False)
    route.end(thread_ended=False)  # idempotent
    transport.logger.error("late, from a thread that would not end")
    assert said == []
    assert capfd.readouterr().err == ""  # nor on Python's fallback
    a, b = socket.socketpair()
    with a, b:
        other = paramiko.Transport(a)
        with Route(other, _trace(3)[0]):
            assert other.get_log_channel() != channel


class _Silent:
    """A TCP server that accepts and never says a word (no SSH banner)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        self.server.close()
        self._thread.join(5)
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent() -> Iterator[_Silent]:
    server = _Silent()
    yield server
    server.close()


def _transports() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if isinstance(t, paramiko.Transport)]


@pytest.mark.parametrize(
    "when",
    [
        "Connection established.",  # dialed, before the transport is made
        "ciphers offered:",  # its log routed, its thread not started
        "waiting for the banner",  # from another thread, the thread running
    ],
)
def test_a_connect_abandoned_at_any_step_leaves_no_channel_lent(
    silent: _Silent, when: str
) -> None:
    settings = resolve(
        parse(f"-F none -p {silent.port} -o ConnectTimeout=10 -L 1:h:2 u@127.0.0.1"),
        home="/nonexistent",
    )
    before = _transports()
    connection: Connection

    def sink(level: int, text: str, source: str) -> None:
        if text.startswith(when):
            connection.abandon()

    connection = Connection(settings, trace=Trace(3, sink))
    later = threading.Thread(target=lambda: (time.sleep(0.5), connection.abandon()))
    if when == "waiting for the banner":
        later.start()
    began = time.monotonic()
    with pytest.raises(ConnectError):
        connection.connect()
    assert time.monotonic() - began < 5
    if later.is_alive():
        later.join()  # its close() joins the transport's thread
    # Its thread (if it started) ended, and nothing of it is left running.
    assert _transports() == before
