"""The terminal the faces print to: its width, and a reader that went away.

``columns()`` is the terminal's width (``COLUMNS``, else the terminal's
own, as ``shutil.get_terminal_size`` finds them), None when there is none
to ask: output piped to a file or a program.  Text a person reads then keeps
under ``UNKNOWN_WIDTH``.

``nbtunnel ... | head -1``: when ``head`` exits, the next write raises
BrokenPipeError.  As the Python documentation advises, the stream is then
pointed at the null device, so that nothing further (the interpreter's
last flush included) fails, and the command ends quietly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
from collections.abc import Callable
from typing import TextIO

# Under a typical editor's and code review's width, over a classic terminal's.
UNKNOWN_WIDTH = 100
# What a command that died of SIGPIPE reports in a shell (128 + 13).
BROKEN_PIPE_STATUS = 141


def columns() -> int | None:
    """The terminal's width in columns, or None if there is no terminal."""
    width = shutil.get_terminal_size((0, 0)).columns
    return width if width > 0 else None


def width() -> int:
    """The width to fit what a person reads: the terminal's, or UNKNOWN_WIDTH."""
    return columns() or UNKNOWN_WIDTH


def silence(stream: TextIO) -> None:
    """Point ``stream`` at the null device: its reader is gone."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, stream.fileno())
        finally:
            os.close(null)


def quiet_on_broken_pipe(run: Callable[[], int]) -> int:
    """``run()``'s status, or BROKEN_PIPE_STATUS, without a traceback, if
    stdout's or stderr's reader went away."""
    try:
        status = run()
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # Whichever stream lost its reader still holds what it could not write.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (BrokenPipeError, ValueError):
                silence(stream)
        return BROKEN_PIPE_STATUS


class Lines:
    """Whole lines to a stream from any thread, one at a time.

    Used where a write happens on a thread that cannot end the command (the
    engine's events): when the reader has gone, the stream is silenced and
    ``on_gone`` is called once, for the main thread to stop.
    """

    def __init__(self, stream: TextIO, on_gone: Callable[[], None]) -> None:
        self.stream = stream
        self.gone = False
        self._on_gone = on_gone
        self._lock = threading.Lock()

    def write(self, *lines: str) -> None:
        with self._lock:
            if self.gone:
                return
            try:
                self.stream.write("".join(line + "\n" for line in lines))
                self.stream.flush()
                return
            except BrokenPipeError:
                silence(self.stream)
                self.gone = True
        self._on_gone()
