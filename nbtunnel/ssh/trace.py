"""What a tunnel's ``-v``, ``-vv`` and ``-vvv`` show: its steps, as ``ssh -v`` does.

Each tunnel has one :class:`Trace`, with the verbosity of its command line;
the layers that do the steps (dialing, the handshake, the host key, the
login, the forwards) tell it what they did, each line at a level:

1. ``-v``: each address tried, the server's version and banner, what the
   handshake agreed, the host key and where it was found, each login method
   and key tried and its answer, each forward asked for and the answer;
2. ``-vv``: the ssh_config lines that applied, the files and lists read,
   each jump host's steps, each channel opened;
3. ``-vvv``: paramiko's own debug log of the connection the tunnel is on,
   made by it or shared (``paramiko_log.Route``).

A line above the tunnel's verbosity costs one comparison and goes nowhere,
so a tunnel without ``-v`` says nothing, whatever the others ask for.  The
lines go to the sink the engine gives (an event of that tunnel); a sink
that fails never fails the step that spoke.

Many lines quote the server (its version and banner, the methods it allows,
paramiko's record of what it sent), and they end on a terminal: each line
is split at its line breaks and escaped (``printable``) on its way out, as
OpenSSH's log does to every line it prints.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from .printable import escaped_lines

# Gets (level, text, source): source "verbose" for nbtunnel's own lines,
# "paramiko" for paramiko's.
Sink = Callable[[int, str, str], None]


class Trace:
    """One tunnel's verbose lines (``prefix`` names a jump host's)."""

    def __init__(
        self, verbosity: int = 0, sink: Sink | None = None, prefix: str = ""
    ) -> None:
        self.verbosity = verbosity if sink is not None else 0
        self._sink = sink
        self._prefix = prefix

    def wants(self, level: int) -> bool:
        """Whether lines of ``level`` are shown: worth working them out."""
        return level <= self.verbosity

    def __call__(self, level: int, text: str, *args: object) -> None:
        """Say ``text % args`` at ``level`` (1 for -v, 2 for -vv)."""
        if level <= self.verbosity:
            self._say(level, text % args if args else text, "verbose")

    def paramiko(self, text: str) -> None:
        """One line of paramiko's own log (shown from -vvv)."""
        if self.verbosity >= 3:
            self._say(3, text, "paramiko")

    def _say(self, level: int, text: str, source: str) -> None:
        assert self._sink is not None
        with contextlib.suppress(Exception):
            for line in escaped_lines(text) or [""]:
                self._sink(level, self._prefix + line, source)

    def child(self, prefix: str) -> Trace:
        """The same tunnel's trace, each line starting with ``prefix``."""
        return Trace(self.verbosity, self._sink, self._prefix + prefix)


# Says nothing: for a connection made outside any tunnel.
QUIET = Trace()
