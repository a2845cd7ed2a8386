"""The engine process: reads requests on stdin, writes replies and events on stdout.

It lives exactly as long as its caller: end-of-file on stdin (the caller
closed the pipe or died, even by SIGKILL) stops every tunnel and exits.
For the case where the pipe stays open in some forked child of the caller,
two more guards: ``PR_SET_PDEATHSIG`` where the system has it (Linux), and
everywhere a watch of the caller's pid (see nbtunnel.platform.processes).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable
from typing import BinaryIO

from .._version import __version__
from ..errors import ForwardError
from ..platform import limits, processes
from .core import Engine
from .protocol import HELLO, PROTOCOL, Message, decode, encode, error_to_dict

PARENT_ENV = "NBTUNNEL_PARENT_PID"
# The level the caller logs nbtunnel at: the engine sends records from INFO,
# or from DEBUG (paramiko's among them) when the caller logs that much.
LOG_LEVEL_ENV = "NBTUNNEL_LOG_LEVEL"
# After the caller is gone: how long the tunnels get to close before the
# process leaves anyway.
GONE_GRACE = 5.0
# New container objects between two collections of the youngest generation.
GC_THRESHOLD = 20_000


class _Writer:
    """Serialises every outgoing message through one thread.

    Forwarding threads emit events; none of them may ever block on the
    pipe when the caller is slow to read it (a busy kernel).
    """

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._queue: queue.SimpleQueue[Message | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run, name="nbtunnel-writer", daemon=True
        )
        self._thread.start()

    def send(self, message: Message) -> None:
        self._queue.put(message)

    def _run(self) -> None:
        while (message := self._queue.get()) is not None:
            try:
                self._out.write(encode(message))
                self._out.flush()
            except (BrokenPipeError, ValueError):
                return  # the caller is gone; stdin's EOF ends the process

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(5.0)


class _LogEvents(logging.Handler):
    """Sends log records to the caller, whose ``nbtunnel`` logger shows them."""

    def __init__(self, send: _Writer) -> None:
        super().__init__(logging.NOTSET)  # the loggers' levels decide
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self._send.send(
                {
                    "event": "log",
                    "level": record.levelno,
                    "logger": record.name,
                    "message": record.getMessage(),
                }
            )


def _die_with_parent(engine: Engine) -> None:
    processes.die_with_parent(signal.SIGTERM)
    expected = os.environ.get(PARENT_ENV)
    if not expected:
        return  # started by hand: stdin's EOF is the only guard

    def gone() -> None:
        # Nobody is left to talk to (the watch also fires at once when the
        # caller died before we got here).  SIGTERM would not wake the main
        # thread from its read on every system: close the tunnels from here.
        processes.exit_after(lambda: engine.stop_all(final=True), GONE_GRACE)

    processes.watch_parent(int(expected), gone)


def _caller_level() -> int:
    level = os.environ.get(LOG_LEVEL_ENV, "")
    # 0 (NOTSET, a root logger set to log everything) is everything too.
    return min(logging.INFO, int(level) or 1) if level.isdigit() else logging.INFO


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _without_a_thread(
    request: Message,
    exc: RuntimeError,
    serve: Callable[[Message], None],
    writer: _Writer,
) -> None:
    """Out of threads (a pids limit): the engine lives on.  A stop or a
    snapshot is answered here, in the reading thread (stopping forwards is
    how a person frees threads); an open, which may wait for the answer to
    a prompt that this very thread would read, is refused with the reason."""
    if request.get("op") != "open":
        serve(request)
        return
    why = limits.shortage(exc) or f"could not start a thread: {exc}"
    error = error_to_dict(ForwardError(why))
    writer.send({"id": request.get("id"), "ok": False, "error": error})


def main() -> int:
    """Run the engine until stdin ends."""
    # Anything that prints (a library, a stray debug line) would corrupt
    # the protocol: keep stdout's pipe for ourselves, point fd 1 at stderr.
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    out = os.fdopen(proto_fd, "wb", buffering=0)
    # An interrupt of the kernel (SIGINT to its process group) must not
    # take the forwards down; stopping is the caller's call.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminate)

    # Everything imported so far lives as long as the process: out of the
    # collector's sight.  And a collection far less often than Python's
    # default (every 700 new containers): a burst of short connections
    # makes tens of thousands of them a second (paramiko's Channel alone
    # brings a handful of Conditions), and a full collection, which holds
    # the GIL while it walks every object, was 7% of the engine's CPU and
    # a pause for every connection at once.
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 50, 100)

    writer = _Writer(out)
    logging.getLogger().addHandler(_LogEvents(writer))
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("nbtunnel").setLevel(_caller_level())
    engine = Engine(writer.send)
    _die_with_parent(engine)
    writer.send(
        {
            "hello": HELLO,
            "protocol": PROTOCOL,
            "pid": os.getpid(),
            "version": __version__,
        }
    )

    def serve(request: Message) -> None:
        writer.send(engine.handle(request))

    try:
        for line in sys.stdin.buffer:
            try:
                request = decode(line)
            except ValueError:
                logging.getLogger("nbtunnel.engine").error(
                    "ignored a malformed request: %r", line[:200]
                )
                continue
            # Each request in its own thread: an "open" that waits for a
            # slow server must not hold up a snapshot or a stop.
            try:
                threading.Thread(
                    target=serve, args=(request,), name="nbtunnel-request", daemon=True
                ).start()
            except RuntimeError as exc:
                _without_a_thread(request, exc, serve, writer)
    finally:
        engine.stop_all(final=True)
        writer.close()
        out.close()
    return 0
