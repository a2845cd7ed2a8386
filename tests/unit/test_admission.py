"""The admission of a listening forward's clients, over real sockets.

What the connection does is played by the test (an opener whose opens are
answered when the test says); the clients are real loopback TCP clients,
resetting, closing and half-closing as real ones do.  End to end, through
the rig's sshd, it is tests/integration/test_bursts.py.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from nbtunnel.forward import admission
from nbtunnel.forward.admission import Admission
from nbtunnel.forward.arrival import Arrival, Failed, Stage
from nbtunnel.platform import sockets

LINGER_0 = struct.pack("ii", 1, 0)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    srv = socket.create_server(("127.0.0.1", 0))
    yield srv
    srv.close()


def pair(srv: socket.socket) -> tuple[socket.socket, socket.socket]:
    """A connected (client, accepted) pair."""
    client = socket.create_connection(srv.getsockname(), 5)
    accepted, _ = srv.accept()
    return client, accepted


def settle() -> None:
    time.sleep(0.05)  # the client's FIN or RST reaches the accepted end


@pytest.mark.parametrize(
    ("sends", "ends", "spoke", "gone"),
    [
        (b"", "reset", False, "reset"),
        (b"data", "reset", False, "reset"),  # data, then a RST: gone
        (b"", "close", False, "closed"),  # closed without a byte
        (b"data", "half", False, None),  # sent and half-closed: carried
        (b"data", "close", False, None),  # sent and closed: carried, as ssh
        (b"", "nothing", False, None),  # connected, silent: still there
        (b"", "half", True, None),  # a SOCKS client's half-close after its request
        (b"", "reset", True, "reset"),
    ],
)
@pytest.mark.parametrize("blocking", [False, True])
def test_client_gone_tells_who_gave_up_before_a_byte_is_read(
    listener: socket.socket,
    sends: bytes,
    ends: str,
    spoke: bool,
    gone: str | None,
    blocking: bool,
) -> None:
    client, accepted = pair(listener)
    try:
        if sends:
            client.sendall(sends)
        if ends == "reset":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
            client.close()
        elif ends == "close":
            client.close()
        elif ends == "half":
            client.shutdown(socket.SHUT_WR)
        settle()
        # Asked once: the answer to a reset consumes it, as any read would.
        accepted.setblocking(blocking)
        assert sockets.client_gone(accepted, spoke=spoke) == gone
        assert accepted.getblocking() == blocking
        if gone is None and sends:  # nothing was consumed
            assert accepted.recv(100) == sends
    finally:
        client.close()
        accepted.close()


class Answers:
    """The test's connection: opens it answers when told to."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: list[tuple[Plain, Callable[[Any], None]]] = []
        self.started: list[Plain] = []
        self.most_in_flight = 0
        self.given_up: list[Plain] = []

    def start(self, arrival: Plain, on_done: Callable[[Any], None]) -> Opening:
        with self.lock:
            self.pending.append((arrival, on_done))
            self.started.append(arrival)
            self.most_in_flight = max(self.most_in_flight, len(self.pending))
        return Opening(self, arrival)

    def answer(self, n: int, result: Callable[[Plain], Any] = lambda a: "chan") -> int:
        with self.lock:
            now, self.pending = self.pending[:n], self.pending[n:]
        for arrival, on_done in now:
            on_done(result(arrival))
        return len(now)


class Opening:
    def __init__(self, answers: Answers, arrival: Plain) -> None:
        self.answers, self.arrival = answers, arrival

    def give_up(self) -> bool:
        with self.answers.lock:
            for i, (a, _) in enumerate(self.answers.pending):
                if a is self.arrival:
                    del self.answers.pending[i]
                    self.answers.given_up.append(a)
                    return True
        return False


class Plain(Arrival):
    """A client whose steps are recorded; read() takes one line."""

    def __init__(
        self,
        sock: socket.socket,
        answers: Answers,
        *,
        reads: bool = False,
    ) -> None:
        super().__init__(sock, time.monotonic() + 30.0)
        self.answers = answers
        self.reads = reads
        self.outcome: list[tuple[str, Any]] = []
        self.done = threading.Event()

    def _record(self, what: str, value: Any = None) -> None:
        self.outcome.append((what, value))
        self.sock.close()
        self.done.set()

    def read(self) -> bool:
        data = self.sock.recv(100)
        if not data:
            raise Failed("closed before its line")
        return data.endswith(b"\n")

    def gone(self) -> str | None:
        return sockets.client_gone(self.sock)

    def open(self, on_done: Any) -> Any:
        return self.answers.start(self, on_done)

    def opened(self, chan: Any) -> None:
        self._record("opened", chan)

    def expired(self, stage: Stage) -> None:
        self._record("expired", stage)

    def fail(self, why: str) -> None:
        self._record("failed", why)

    def end(self, why: str | None = None) -> None:
        self._record("ended", why)


@pytest.fixture
def admit() -> Iterator[Callable[..., Admission]]:
    made: list[Admission] = []

    def make(limit: int = admission.LIMIT) -> Admission:
        adm = Admission("test", limit)
        adm.start()
        made.append(adm)
        return adm

    yield make
    for adm in made:
        adm.stop()


def wait(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.005)


def test_at_most_the_limit_in_flight_the_rest_in_order(
    listener: socket.socket, admit: Callable[..., Admission]
) -> None:
    answers = Answers()
    adm = admit(limit=8)
    pairs = [pair(listener) for _ in range(50)]
    arrivals = [Plain(accepted, answers) for _, accepted in pairs]
    for arrival in arrivals:
        assert adm.admit(arrival)
    wait(lambda: len(answers.started) == 8)
    time.sleep(0.1)
    assert len(answers.started) == 8  # no more until some are answered
    answer_until_done(answers, arrivals)
    assert answers.most_in_flight == 8
    assert answers.started == arrivals  # in arrival order
    assert all(a.outcome == [("opened", "chan")] for a in arrivals)
    for client, _ in pairs:
        client.close()


def answer_until_done(answers: Answers, arrivals: list[Plain]) -> None:
    """Answer the opens a few at a time until every client is done."""
    deadline = time.monotonic() + 10
    while not all(a.done.is_set() for a in arrivals):
        assert time.monotonic() < deadline, "clients still waiting"
        answers.answer(3)
        time.sleep(0.005)


def test_a_client_that_gave_up_in_the_queue_gets_no_open(
    listener: socket.socket, admit: Callable[..., Admission]
) -> None:
    answers = Answers()
    adm = admit(limit=1)
    first_client, first = pair(listener)
    adm.admit(Plain(first, answers))
    wait(lambda: len(answers.started) == 1)
    kinds = ["reset", "close", "half", "send-reset", "silent"]
    queued = []
    for kind in kinds:
        client, accepted = pair(listener)
        if kind in ("half", "send-reset"):
            client.sendall(b"hello")
        if kind in ("reset", "send-reset"):
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
            client.close()
        elif kind == "close":
            client.close()
        elif kind == "half":
            client.shutdown(socket.SHUT_WR)
        queued.append((kind, client, Plain(accepted, answers)))
        adm.admit(queued[-1][2])
    settle()
    answer_until_done(answers, [a for _, _, a in queued])
    outcome = {kind: a.outcome for kind, _, a in queued}
    assert outcome == {
        "reset": [("ended", "reset")],
        "close": [("ended", "closed")],
        "half": [("opened", "chan")],
        "send-reset": [("ended", "reset")],
        "silent": [("opened", "chan")],
    }
    for _, client, _ in queued:
        client.close()
    first_client.close()


def test_one_deadline_from_arrival_whether_queued_or_in_flight(
    listener: socket.socket, admit: Callable[..., Admission]
) -> None:
    answers = Answers()
    adm = admit(limit=1)
    pairs = [pair(listener) for _ in range(3)]
    arrivals = [Plain(accepted, answers) for _, accepted in pairs]
    started = time.monotonic()
    for arrival in arrivals:
        arrival.deadline = started + 0.3  # the same for all: none opens late
        adm.admit(arrival)
    wait(lambda: all(a.done.is_set() for a in arrivals))
    assert time.monotonic() - started < 1.0  # not 0.3 s for each in turn
    assert [a.outcome for a in arrivals] == [
        [("expired", "opening")],
        [("expired", "queued")],
        [("expired", "queued")],
    ]
    assert answers.given_up == arrivals[:1]
    for client, _ in pairs:
        client.close()


def test_a_reading_client_is_read_as_it_arrives_without_a_thread(
    listener: socket.socket, admit: Callable[..., Admission]
) -> None:
    answers = Answers()
    adm = admit()
    before = threading.active_count()
    pairs = [pair(listener) for _ in range(100)]
    arrivals = [Plain(accepted, answers, reads=True) for _, accepted in pairs]
    for arrival in arrivals:
        adm.admit(arrival)
    for i, (client, _) in enumerate(pairs):
        client.sendall(b"slow " if i % 2 else b"whole line\n")
    wait(lambda: len(answers.started) == 50)
    assert threading.active_count() == before
    assert all(a.stage == "reading" for a in arrivals[1::2])
    for i, (client, _) in enumerate(pairs):
        if i % 2:
            client.sendall(b"line\n")
    answer_until_done(answers, arrivals)
    assert all(a.outcome == [("opened", "chan")] for a in arrivals)
    for client, _ in pairs:
        client.close()


def test_stop_ends_every_waiting_client_and_gives_up_their_opens(
    listener: socket.socket, admit: Callable[..., Admission]
) -> None:
    answers = Answers()
    adm = admit(limit=2)
    pairs = [pair(listener) for _ in range(4)]
    reading = Plain(pairs[0][1], answers, reads=True)
    waiting = [Plain(accepted, answers) for _, accepted in pairs[1:]]
    for arrival in [reading, *waiting]:
        adm.admit(arrival)
    wait(lambda: len(answers.started) == 2)
    adm.stop()
    assert all(a.outcome == [("ended", None)] for a in [reading, *waiting])
    assert set(answers.given_up) == set(waiting[:2])
    late_client, accepted = pair(listener)
    late = Plain(accepted, answers)
    assert not adm.admit(late)  # the forward closes it
    late.end()
    late_client.close()
    for client, _ in pairs:
        assert client.recv(10) == b""  # closed, not reset
        client.close()


def test_a_step_that_raises_ends_that_client_and_not_the_admission(
    listener: socket.socket, admit: Callable[..., Admission]
) -> None:
    answers = Answers()
    adm = admit()

    class Broken(Plain):
        def open(self, on_done: Any) -> Any:
            raise ValueError("a bug")

    client, accepted = pair(listener)
    broken = Broken(accepted, answers)
    adm.admit(broken)
    wait(broken.done.is_set)
    assert broken.outcome == [
        ("failed", "the connection failed unexpectedly: ValueError: a bug")
    ]
    client.close()
    client, accepted = pair(listener)
    fine = Plain(accepted, answers)
    adm.admit(fine)
    wait(lambda: answers.answer(1))
    wait(fine.done.is_set)
    assert fine.outcome == [("opened", "chan")]
    client.close()
