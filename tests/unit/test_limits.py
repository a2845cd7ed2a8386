"""The descriptor limit: raised to the hard one, and said in one line when it runs out.

Each case runs a real Python under a real limit (``prlimit``), never a mock.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from nbtunnel.platform import limits

ROOT = Path(__file__).resolve().parents[2]

needs_prlimit = pytest.mark.skipif(
    limits.fd_limits() is None or shutil.which("prlimit") is None,
    reason="needs a descriptor limit and util-linux's prlimit",
)


def _under_limit(soft: int, hard: int, code: str) -> object:
    """Run ``code`` in a Python started with that limit; its last line, as JSON."""
    done = subprocess.run(
        [
            "prlimit",
            f"--nofile={soft}:{hard}",
            sys.executable,
            "-c",
            textwrap.dedent(code),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


RAISE = """
    import json, resource
    from nbtunnel.platform import limits
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    raised = limits.raise_fd_limit()
    again = limits.raise_fd_limit()
    print(json.dumps([before, raised, again, resource.getrlimit(resource.RLIMIT_NOFILE)]))
"""


@needs_prlimit
def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    before, raised, again, after = _under_limit(256, 4096, RAISE)  # type: ignore[misc]
    assert before == [256, 4096]
    assert raised == [256, 4096] and again == [4096, 4096]
    assert after == [4096, 4096]


@needs_prlimit
def test_a_hard_limit_as_low_is_left_as_it_is() -> None:
    before, raised, _, after = _under_limit(256, 256, RAISE)  # type: ignore[misc]
    assert before == after == [256, 256] and raised == [256, 256]


@needs_prlimit
def test_a_listener_out_of_descriptors_fails_in_one_line_and_unbinds() -> None:
    code = """
        import json, os, socket
        from nbtunnel.errors import ForwardError
        from nbtunnel.forward.listener import Listener
        listener = Listener(port=0)
        listener.bind()
        port = listener.listen_port
        filler = []
        try:
            while True:
                filler.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        try:
            listener.start(lambda sock, origin: sock.close())
            error = None
        except ForwardError as exc:
            error = str(exc)
        for fd in filler:
            os.close(fd)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            bound = True
        except ConnectionRefusedError:
            bound = False
        listener.close()
        print(json.dumps([port, error, bound]))
    """
    port, error, bound = _under_limit(64, 64, code)  # type: ignore[misc]
    assert error == (
        f"cannot accept on port {port}: out of file descriptors: this process may "
        "have 64 open (ulimit -n; hard limit 64): raise the hard limit where the "
        "engine starts (ulimit -Hn before starting Jupyter, LimitNOFILE= for a "
        "systemd service) or run fewer forwards"
    )
    assert bound is False


def test_each_shortage_is_named_with_what_to_do() -> None:
    emfile = limits.shortage(OSError(errno.EMFILE, "Too many open files"))
    assert emfile is not None and emfile.startswith("out of file descriptors")
    if limits.fd_limits() is not None:
        assert "ulimit -n" in emfile
    enfile = limits.shortage(OSError(errno.ENFILE, "Too many open files in system"))
    assert enfile is not None and "system" in enfile
    nobufs = limits.shortage(OSError(errno.ENOBUFS, "No buffer space available"))
    assert nobufs is not None and "memory" in nobufs
    thread = limits.shortage(RuntimeError("can't start new thread"))
    assert thread is not None and "thread" in thread and "pids" in thread
    assert limits.shortage(ConnectionRefusedError(errno.ECONNREFUSED, "x")) is None
    assert limits.shortage(RuntimeError("threads can only be started once")) is None
    assert limits.shortage(ValueError("no")) is None
    for line in (emfile, enfile, nobufs, thread):
        assert "\n" not in line


@needs_prlimit
def test_a_second_shortage_long_after_the_first_is_said_again() -> None:
    # The first shortage ended with one client served and the forward idle
    # after it; hours later (here 1.5 s, past accept.QUIET) another begins:
    # it must be said, not taken for the old one.
    code = """
        import json, logging, os, socket, time
        from nbtunnel.forward.listener import Listener
        said = []

        class Keep(logging.Handler):
            def emit(self, record):
                said.append(record.getMessage())

        logging.getLogger("nbtunnel.forward").addHandler(Keep())
        served = []
        listener = Listener(port=0)
        listener.bind()
        listener.start(lambda sock, origin: (served.append(1), sock.close()))
        port = listener.listen_port
        clients = [socket.socket() for _ in range(2)]
        filler = []

        def fill():
            try:
                while True:
                    filler.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                pass

        def wait(predicate):
            deadline = time.monotonic() + 2
            while not predicate() and time.monotonic() < deadline:
                time.sleep(0.01)

        for n, client in enumerate(clients, 1):
            fill()
            client.connect(("127.0.0.1", port))  # queued: accept() has no fd
            wait(lambda: sum("cannot accept" in line for line in said) >= n)
            os.close(filler.pop())  # one fd: the client is served
            wait(lambda: len(served) >= n)
            time.sleep(1.5)  # idle, past QUIET
        listener.close()
        print(json.dumps([len(served), said]))
    """
    served, said = _under_limit(64, 64, code)  # type: ignore[misc]
    assert served == 2
    warned = [line for line in said if "cannot accept new clients" in line]
    assert len(warned) == 2, said
    assert any("serving again" in line for line in said), said
