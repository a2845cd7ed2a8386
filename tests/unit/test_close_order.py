"""A channel's data and EOF never reach the server after its CLOSE
(forward/relay.py, _paramiko/ordered.py).

OpenSSH frees a channel once CLOSE has gone both ways and drops the whole
SSH connection when anything but a window adjust arrives for it afterwards.
Here a paramiko server in this process records the order in which each
channel's messages arrive, and the relay's upward thread (the one that
sends data and the EOF) pauses right after each time it lets go of the
channel's lock: where any thread may lose the CPU (for a GIL switch
interval, or a time slice under load).  A close from another thread (the
relay's other direction, or paramiko's transport thread answering the
server's CLOSE) then gets every chance to overtake what that thread has
decided to send.  The last test makes the relay's helper thread fail to
start for real, under a process limit.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from nbtunnel._paramiko import ordered, probe
from nbtunnel._paramiko.transport import Transport
from nbtunnel.forward.relay import Relay
from nbtunnel.status import Counters
from paramiko.common import MSG_CHANNEL_CLOSE, MSG_CHANNEL_DATA, MSG_CHANNEL_EOF

from tests.capabilities import IS_ROOT

ROOT = Path(__file__).resolve().parents[2]
NAMES = {MSG_CHANNEL_DATA: "data", MSG_CHANNEL_EOF: "eof", MSG_CHANNEL_CLOSE: "close"}
UP = "relay-up"  # the thread that runs the relay, and so its upward half
PAUSE = 0.2


class _Server(paramiko.ServerInterface):
    def get_allowed_auths(self, username: str) -> str:
        return "none"

    def check_auth_none(self, username: str) -> int:
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_direct_tcpip_request(
        self, chanid: int, origin: tuple[str, int], destination: tuple[str, int]
    ) -> int:
        return paramiko.OPEN_SUCCEEDED


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        one = socket.create_connection(listener.getsockname())
        other, _ = listener.accept()
    return one, other


class Link:
    """nbtunnel's client Transport (with the gate's features) and a paramiko
    server, over loopback TCP; ``seen`` is every DATA, EOF and CLOSE the
    server received, as (its channel id, name), in order."""

    def __init__(self, cipher: str | None = None) -> None:
        ours, theirs = tcp_pair()
        self.seen: list[tuple[int, str]] = []
        self.server = paramiko.Transport(theirs)
        self.server.add_server_key(paramiko.ECDSAKey.generate())
        read = self.server.packetizer.read_message

        def record() -> tuple[int, paramiko.Message]:
            ptype, m = read()
            if ptype in NAMES:
                (chanid,) = struct.unpack(">I", m.asbytes()[:4])
                self.seen.append((chanid, NAMES[ptype]))
            return ptype, m

        self.server.packetizer.read_message = record  # type: ignore[method-assign]
        self.server.start_server(event=threading.Event(), server=_Server())
        self.client = Transport(ours)
        if cipher is not None:
            options = self.client.get_security_options()
            if cipher not in options.ciphers:
                self.server.close()
                ours.close()
                pytest.skip(f"paramiko {paramiko.__version__} has no {cipher}")
            options.ciphers = (cipher,)
        self.client.start_client(timeout=10)
        self.client.auth_none("test")

    def channel(self) -> tuple[paramiko.Channel, paramiko.Channel]:
        chan = self.client.open_channel(
            "direct-tcpip", ("target", 9), ("127.0.0.1", 0), timeout=10
        )
        theirs = self.server.accept(10)
        assert theirs is not None
        return chan, theirs

    def order(self, chan: paramiko.Channel, *, settle: float = 3 * PAUSE) -> list[str]:
        """What arrived for ``chan`` (the server's end), once its CLOSE has
        and anything late would have."""
        deadline = time.monotonic() + 10
        while (chan.chanid, "close") not in self.seen:
            assert time.monotonic() < deadline, f"no CLOSE: {self.seen}"
            time.sleep(0.01)
        time.sleep(settle)
        return [name for chanid, name in self.seen if chanid == chan.chanid]

    def close(self) -> None:
        self.client.close()
        self.server.close()


class Preempted:
    """A channel's lock after whose every release by the thread named UP
    that thread pauses, as if it had lost the CPU right there."""

    def __init__(self, lock: Any) -> None:
        self._lock = lock

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return bool(self._lock.acquire(blocking, timeout))

    def release(self) -> None:
        self._lock.release()
        if threading.current_thread().name == UP:
            time.sleep(PAUSE)

    def __enter__(self) -> Preempted:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@pytest.fixture(params=["aes128-gcm@openssh.com", "aes128-ctr"])
def link(request: pytest.FixtureRequest) -> Iterator[Link]:
    """With GCM (the fast path's batches) and without (paramiko's packets)."""
    made = Link(request.param)
    yield made
    made.close()


class Relayed:
    """A relay between a client application's socket and ``chan``, run by a
    thread named UP, whose releases of the channel's lock are preempted."""

    def __init__(self, chan: paramiko.Channel) -> None:
        chan.lock = Preempted(chan.lock)  # type: ignore[assignment]
        self.app, ours = tcp_pair()
        self.counters = Counters()
        self.relay = Relay(ours, chan, self.counters)
        self.thread = threading.Thread(target=self.relay.run, name=UP)
        self.thread.start()

    def reset(self) -> None:
        """The application closes with a reset (SO_LINGER 0)."""
        self.app.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        self.app.close()

    def join(self) -> None:
        self.thread.join(10)
        assert not self.thread.is_alive()
        self.app.close()


@pytest.mark.parametrize("gate", ["ordered", "off"])
def test_the_relays_own_close_waits_for_its_eof(
    link: Link, gate: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Send, half-close, reset: the echo comes back into a reset socket, so
    the relay's downward thread closes the channel while the upward one is
    sending the EOF.  With the gate's ordering off (a paramiko that lacks
    what it needs), the relay's own lock still keeps these two in order."""
    if gate == "off":
        monkeypatch.setattr(ordered, "ordered", lambda chan, batch=True: None)
    chan, theirs = link.channel()
    relayed = Relayed(chan)
    relayed.app.sendall(b"hello")
    relayed.app.shutdown(socket.SHUT_WR)
    relayed.reset()
    assert theirs.recv(100) == b"hello"
    time.sleep(PAUSE / 4)  # the EOF is decided by now, not sent
    theirs.sendall(b"hello")
    relayed.join()
    assert link.order(theirs) == ["data", "eof", "close"]
    assert relayed.relay.error is not None  # the write into the reset socket


def test_an_answer_to_the_servers_close_waits_for_our_eof(link: Link) -> None:
    """The server closes as our EOF is on its way: paramiko's transport
    thread answers with our CLOSE."""
    chan, theirs = link.channel()
    relayed = Relayed(chan)
    relayed.app.sendall(b"hello")
    relayed.app.shutdown(socket.SHUT_WR)
    assert theirs.recv(100) == b"hello"
    time.sleep(PAUSE / 4)
    theirs.close()
    relayed.join()
    assert link.order(theirs) == ["data", "eof", "close"]


def test_no_data_after_the_close(link: Link) -> None:
    """The server closes while more data is on its way to it."""
    chan, theirs = link.channel()
    relayed = Relayed(chan)
    relayed.app.sendall(b"first")
    time.sleep(PAUSE / 4)
    relayed.app.sendall(b"second")  # taken while "first" waits to go out
    relayed.app.shutdown(socket.SHUT_WR)
    assert theirs.recv(100) == b"first"
    time.sleep(PAUSE / 4)
    theirs.close()
    relayed.join()
    assert link.order(theirs) == ["data", "eof", "close"]
    assert relayed.relay.error is not None


def test_the_order_holds_over_many_plain_connections() -> None:
    """Without any pause: 200 half-close-then-reset connections, each
    channel's messages in order."""
    made = Link("aes128-gcm@openssh.com")
    try:
        ours: list[paramiko.Channel] = []
        for _ in range(200):
            chan, theirs = made.channel()
            app, sock = tcp_pair()
            relay = Relay(sock, chan, Counters())
            thread = threading.Thread(target=relay.run)
            thread.start()
            app.sendall(b"x" * 1000)
            app.shutdown(socket.SHUT_WR)
            app.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            app.close()
            with contextlib.suppress(OSError, EOFError):
                theirs.sendall(theirs.recv(1000))
            thread.join(10)
            assert not thread.is_alive()
            ours.append(theirs)
        for theirs in ours:
            order = made.order(theirs, settle=0)
            assert order[-1] == "close" and order.count("close") == 1, order
            assert "eof" in order, order
        time.sleep(0.5)  # anything late would have arrived
        for theirs in ours:
            order = [n for c, n in made.seen if c == theirs.chanid]
            assert order[-1] == "close", order
            theirs.close()
    finally:
        made.close()


def test_a_paramiko_without_what_it_needs_turns_only_the_order_off() -> None:
    code = """
        import json, paramiko
        del paramiko.Channel._send_eof
        from nbtunnel._paramiko import probe
        print(json.dumps(probe.report()))
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(probe.SWITCH, None)
    ran = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert ran.returncode == 0 and ran.stderr == "", ran.stderr
    report = json.loads(ran.stdout)
    assert report.pop("ordered") == (
        "sending a channel's data and EOF before its CLOSE needs "
        f"Channel._send_eof, which paramiko {paramiko.__version__} does not "
        "have; the relay still sends its own EOF before its CLOSE, but "
        "paramiko's data or EOF may follow a CLOSE and make the server disconnect"
    )
    assert report == {f: probe.lacking(f) for f in report}


# -- the relay's helper thread cannot start ------------------------------------

_NO_THREAD = """
import json, os, resource, socket, sys, threading
# Whatever is imported late must be imported now: after setuid the
# interpreter's own library (under root's home, say) may be unreadable, and
# connecting to "127.0.0.1" encodes the name with the idna codec.
import encodings.idna
sys.path.insert(0, {root!r})
from tests.unit.test_close_order import Link, tcp_pair
from nbtunnel.forward.relay import Relay
from nbtunnel.status import Counters

# An unprivileged uid of our own, so that RLIMIT_NPROC counts (root is
# exempt) and counts only this process's threads.
os.setgid({uid})
os.setuid({uid})
link = Link()
chan, theirs = link.channel()
app, ours = tcp_pair()
counters = Counters()
relay = Relay(ours, chan, counters)
soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
resource.setrlimit(resource.RLIMIT_NPROC, (len(os.listdir("/proc/self/task")), hard))
try:
    threading.Thread(target=lambda: None).start()
    limited = False
except RuntimeError:
    limited = True
relay.run()  # no hang: it returns
resource.setrlimit(resource.RLIMIT_NPROC, (soft, hard))
app.settimeout(10)
try:
    got = repr(app.recv(10))
except OSError as exc:
    got = type(exc).__name__
order = link.order(theirs)
# The next connection is carried: nothing was left broken.
chan2, theirs2 = link.channel()
app2, ours2 = tcp_pair()
relay2 = Relay(ours2, chan2, Counters())
thread = threading.Thread(target=relay2.run)
thread.start()
app2.sendall(b"next")
app2.shutdown(socket.SHUT_WR)
echoed = theirs2.recv(10)
theirs2.sendall(echoed)
theirs2.shutdown_write()
app2.settimeout(10)
back = app2.recv(10)
thread.join(10)
print(json.dumps({{
    "limited": limited, "error": relay.error,
    "failed": counters.snapshot().connections_failed,
    "last_error": counters.snapshot().last_error,
    "client_got": got, "order": order, "next": back.decode(),
    "joined": not thread.is_alive(),
}}))
for s in (app, app2):
    s.close()
link.close()
"""


@pytest.mark.skipif(
    not (IS_ROOT and os.path.isdir("/proc/self/task")),
    reason="needs root (to take a uid of its own) and /proc/self/task",
)
def test_a_helper_thread_that_cannot_start_ends_that_connection() -> None:
    """Under RLIMIT_NPROC (a process limit, as a pids cgroup or TasksMax
    would be), the relay's helper thread fails to start for real: that
    connection is reset, its channel sends EOF then CLOSE, and the failure
    is counted with one line saying why."""
    uid = 200_000 + os.getpid() % 100_000
    code = textwrap.dedent(_NO_THREAD).format(root=str(ROOT), uid=uid)
    ran = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert ran.returncode == 0, ran.stderr
    out = json.loads(ran.stdout)
    assert out["limited"], "RLIMIT_NPROC did not stop a thread from starting"
    why = (
        "could not start a thread for this connection: can't start new thread "
        "(a process limit?)"
    )
    assert out["error"] == why
    assert out["failed"] == 1 and out["last_error"] == why
    assert out["client_got"] == "ConnectionResetError"
    assert out["order"] == ["eof", "close"]
    assert out["next"] == "next" and out["joined"]
    assert ran.stderr == ""
