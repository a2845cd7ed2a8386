"""Channel opens that no thread waits for, against the rig's real sshd
(nbtunnel/_paramiko/opening.py, nbtunnel/ssh/opens.py).

The server is frozen (SIGSTOP of its processes) where a test needs an open
to stay unanswered for a while.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import paramiko
import pytest
from nbtunnel.errors import ConnectError, ForwardError
from nbtunnel.ssh.connection import Connection

from tests.rig import clients, procs
from tests.rig.launcher import Targets
from tests.rig.sshd import SshServer

pytestmark = pytest.mark.integration

ORIGIN = ("127.0.0.1", 0)
Connect = Callable[..., Connection]


@pytest.fixture
def sshd(fresh_sshd: SshServer) -> SshServer:
    """A server of this module's own (it gets frozen), for the shared
    ``connect`` fixture too (tests/integration/conftest.py)."""
    return fresh_sshd


@contextlib.contextmanager
def frozen(server: SshServer) -> Iterator[None]:
    """The server's processes stopped meanwhile: it answers nothing."""
    pids = [server.pid, *procs.descendants(server.pid)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def echoes(chan: paramiko.Channel, data: bytes) -> bool:
    chan.sendall(data)
    chan.shutdown_write()
    got = b""
    chan.settimeout(10)
    while piece := chan.recv(65536):
        got += piece
    return got == data


def test_two_hundred_opens_in_flight_and_not_a_thread_more(
    connect: Connect, targets: Targets
) -> None:
    connection = connect()
    answers: queue.Queue[Any] = queue.Queue()
    before = threading.active_count()
    for _ in range(200):
        connection.open_tcpip_async(targets.host, targets.echo, ORIGIN, 30, answers.put)
    in_flight = threading.active_count()
    got = [answers.get(timeout=30) for _ in range(200)]
    assert in_flight == before
    assert all(isinstance(chan, paramiko.Channel) for chan in got), got[:3]
    assert all(echoes(chan, b"open %d" % i) for i, chan in enumerate(got[:20]))
    for chan in got:
        chan.close()


def test_a_refusal_comes_back_with_the_servers_words(
    connect: Connect, targets: Targets
) -> None:
    connection = connect()
    answers: queue.Queue[Any] = queue.Queue()
    connection.open_tcpip_async(
        targets.host, targets.refused_port, ORIGIN, 30, answers.put
    )
    error = answers.get(timeout=10)
    assert isinstance(error, ForwardError)
    assert error.code == 2
    assert "Connection refused" in str(error)
    # and the waiting open says the same
    with pytest.raises(ForwardError, match="Connection refused"):
        connection.open_tcpip(targets.host, targets.refused_port, ORIGIN, 30)


def test_closing_the_connection_answers_every_open_at_once(
    connect: Connect, fresh_sshd: SshServer, targets: Targets
) -> None:
    connection = connect()
    answers: queue.Queue[Any] = queue.Queue()
    waited: list[BaseException] = []

    def wait_for_one() -> None:
        try:
            connection.open_tcpip(targets.host, targets.echo, ORIGIN, 30)
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            waited.append(exc)

    with frozen(fresh_sshd):
        for _ in range(5):
            connection.open_tcpip_async(
                targets.host, targets.echo, ORIGIN, 30, answers.put
            )
        waiter = threading.Thread(target=wait_for_one)
        waiter.start()
        time.sleep(0.3)
        assert answers.empty()
        started = time.monotonic()
        connection.close()
        got = [answers.get(timeout=5) for _ in range(5)]
        waiter.join(5)
        took = time.monotonic() - started
    assert all(isinstance(e, ConnectError) for e in got), got
    assert len(waited) == 1 and isinstance(waited[0], ConnectError)
    assert took < 1.0  # not the 30 s of the open's deadline


def tally(connection: Connection, targets: Targets) -> dict[str, Any]:
    chan = connection.open_tcpip(targets.host, targets.tally, ORIGIN, 10)
    chan.sendall(b"TALLY?\n")
    chan.shutdown_write()
    chan.settimeout(10)
    got = b""
    while piece := chan.recv(65536):
        got += piece
    chan.close()
    report: dict[str, Any] = json.loads(got)
    return report


def test_an_open_given_up_is_closed_when_its_answer_comes_late(
    connect: Connect, fresh_sshd: SshServer, targets: Targets
) -> None:
    connection = connect()
    empty = hashlib.sha256(b"").hexdigest()
    before = tally(connection, targets)
    answers: queue.Queue[Any] = queue.Queue()
    with frozen(fresh_sshd):
        opening = connection.open_tcpip_async(
            targets.host, targets.tally, ORIGIN, 30, answers.put
        )
        time.sleep(0.3)
        assert opening.give_up()
        assert not opening.give_up()
    # The server connects the target after all and confirms; that channel
    # is closed at once, so the target sees a connection end with no data.
    clients.wait_until(
        lambda: (
            tally(connection, targets)["digests"].get(empty, 0)
            == before["digests"].get(empty, 0) + 1
        ),
        10,
        0.1,
    )
    after = tally(connection, targets)
    assert after["accepted"] == before["accepted"] + 1
    assert answers.empty()  # nobody was told: it had been given up
    assert connection.is_active
    # and the connection opens channels as before
    chan = connection.open_tcpip(targets.host, targets.echo, ORIGIN, 10)
    assert echoes(chan, b"still fine")
    chan.close()
