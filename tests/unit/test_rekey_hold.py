"""The re-key fix's hold (nbtunnel/_paramiko/rekey.py) on its own: what the
transport thread sends during a key exchange waits, in order, and nothing
it sends later overtakes it; a failure ends the connection instead of
leaving it half-open.

The transport here is a thread with paramiko's ``clear_to_send`` event and a
``_send_user_message`` that waits for it as paramiko's does; the real
re-key runs against sshd in tests/integration/test_fastpath.py
(test_rekeying_every_megabyte_with_channels_closing) and, with paramiko's
handler tables renamed, in tests/integration/test_renamed_internals.py."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from nbtunnel._paramiko import rekey


class _Transport(threading.Thread):
    """Where the hold looks: the thread it runs in, clear_to_send, close()."""

    def __init__(self, fail_send: bool = False) -> None:
        super().__init__(daemon=True)
        self.clear_to_send = threading.Event()
        self.clear_to_send.set()
        self.sent: list[Any] = []
        self.closed = threading.Event()
        self.fail_send = fail_send
        self.job: Callable[[], None] = lambda: None

    def _send_user_message(self, m: Any) -> None:
        # paramiko's: wait out a key exchange (from another thread: the one
        # running it would wait forever, which is what the hold prevents).
        if not self.clear_to_send.wait(5):
            raise TimeoutError("Key-exchange timed out waiting for key negotiation")
        if self.fail_send:
            raise OSError("the socket is gone")
        self.sent.append(m)

    def close(self) -> None:
        self.closed.set()

    def run(self) -> None:
        self.job()

    def on_own_thread(self, job: Callable[[], None]) -> None:
        self.job = job
        self.start()
        self.join(5)
        assert not self.is_alive(), "the transport thread waited on itself"


def _wait_for(condition: Callable[[], bool]) -> None:
    done = threading.Event()
    for _ in range(500):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("not within 5 s")


def test_outside_a_key_exchange_messages_go_straight_out() -> None:
    t = _Transport()
    rekey.install(t)  # type: ignore[arg-type]
    t.on_own_thread(lambda: t._send_user_message("a"))
    assert t.sent == ["a"]


def test_during_a_key_exchange_the_transport_thread_holds_and_goes_on() -> None:
    t = _Transport()
    rekey.install(t)  # type: ignore[arg-type]
    t.clear_to_send.clear()

    def job() -> None:
        for m in ("close 1", "close 2", "reply 3"):
            t._send_user_message(m)

    t.on_own_thread(job)  # returns: nothing waited on the exchange
    assert t.sent == []
    t.clear_to_send.set()  # the server's NEWKEYS
    _wait_for(lambda: len(t.sent) == 3)
    assert t.sent == ["close 1", "close 2", "reply 3"]
    assert not t.closed.is_set()


def test_what_the_transport_thread_sends_later_queues_behind_the_held() -> None:
    t = _Transport()
    rekey.install(t)  # type: ignore[arg-type]
    t.clear_to_send.clear()
    release = threading.Event()

    def job() -> None:
        t._send_user_message("held")
        t.clear_to_send.set()
        # The sender may not have sent "held" yet: this must not pass it.
        t._send_user_message("after")
        release.wait(5)

    t.job = job
    t.start()
    _wait_for(lambda: len(t.sent) == 2)
    release.set()
    t.join(5)
    assert t.sent == ["held", "after"]


def test_other_threads_keep_paramikos_wait() -> None:
    t = _Transport()
    rekey.install(t)  # type: ignore[arg-type]
    t.clear_to_send.clear()
    other = threading.Thread(target=t._send_user_message, args=("from a relay",))
    other.start()
    other.join(0.2)
    assert other.is_alive() and t.sent == []
    t.clear_to_send.set()
    other.join(5)
    assert t.sent == ["from a relay"]


def test_a_held_message_that_cannot_be_sent_ends_the_connection() -> None:
    t = _Transport(fail_send=True)
    rekey.install(t)  # type: ignore[arg-type]
    t.clear_to_send.clear()
    t.on_own_thread(lambda: t._send_user_message("close"))
    t.clear_to_send.set()
    assert t.closed.wait(5)


def test_no_thread_to_spare_ends_the_connection_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = _Transport()
    rekey.install(t)  # type: ignore[arg-type]
    t.clear_to_send.clear()
    real_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        if self.name == "nbtunnel-rekey-held":
            raise RuntimeError("can't start new thread")
        real_start(self)

    def job() -> None:
        monkeypatch.setattr(threading.Thread, "start", start)
        t._send_user_message("close")

    t.on_own_thread(job)
    assert t.closed.is_set() and t.sent == []
