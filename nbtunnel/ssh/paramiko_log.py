"""paramiko's log records under nbtunnel's logger, never on a bare stderr.

paramiko logs on ``paramiko.transport`` and adds no handler: with logging
not configured (the CLI, a notebook kernel), Python's last-resort handler
prints its warnings and errors on stderr, so a server that is not an SSH
server showed "Exception (client): Error reading SSH protocol banner" and a
traceback above nbtunnel's own one-line error.  :func:`route` gives each of
our transports the log channel ``nbtunnel.paramiko`` instead (its channels
and packetizer log there too), whose records are demoted to DEBUG: what
paramiko has to say about a failure reaches the user as nbtunnel's error,
and the records stay there for whoever logs ``nbtunnel`` at DEBUG.
``nbtunnel``'s NullHandler (nbtunnel/__init__.py) keeps Python's fallback
from ever printing them.
paramiko's own loggers, which other code in the process may use, are left
alone.

A tunnel with ``-vvv`` wants paramiko's log of its own connections only:
each of its transports gets a channel of its own (``nbtunnel.paramiko.vN``)
whose every record goes to the tunnel's trace and nowhere else.  Those
channels are lent out and given back when the connection closes, so a
tunnel that reconnects all week does not make a logger per connection.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import paramiko

from .trace import QUIET, Trace

CHANNEL = "nbtunnel.paramiko"


class _AtDebug(logging.Filter):
    """Every record of the channel as DEBUG, kept only if DEBUG is logged.

    paramiko decided its record was worth an ERROR before the filter ran;
    the filter decides again, as if it had been logged at DEBUG (handlers
    above look at the record's level only, not at their loggers').
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return _logger.isEnabledFor(logging.DEBUG)


_logger = logging.getLogger(CHANNEL)
if not any(isinstance(f, _AtDebug) for f in _logger.filters):
    _logger.addFilter(_AtDebug())


class _ToTrace(logging.Handler):
    """A -vvv connection's paramiko records, as lines of its tunnel's trace."""

    def __init__(self, trace: Trace) -> None:
        super().__init__(logging.NOTSET)
        self._trace = trace

    def emit(self, record: logging.LogRecord) -> None:
        self._trace.paramiko(record.getMessage())


_free: list[str] = []  # -vvv channels not lent out
_made = 0
_lock = threading.Lock()


def _borrow() -> logging.Logger:
    global _made
    with _lock:
        if _free:
            return logging.getLogger(_free.pop())
        _made += 1
        name = f"{CHANNEL}.v{_made}"
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    # Nothing of it reaches the handlers above (the engine's, which would
    # send paramiko's ERRORs on as ERRORs), and with the trace's handler
    # gone, a late record finds this one rather than Python's fallback.
    logger.propagate = False
    logger.addHandler(logging.NullHandler())
    return logger


def route(transport: paramiko.Transport, trace: Trace = QUIET) -> Callable[[], None]:
    """Send ``transport``'s log records (and its channels') to :data:`CHANNEL`,
    or with ``-vvv`` to ``trace``; before it starts, so that its thread logs
    nothing anywhere else.  Returns what gives a -vvv channel back, to call
    once the transport's thread has ended."""
    if not trace.wants(3):
        transport.set_log_channel(CHANNEL)
        return lambda: None
    logger = _borrow()
    handler = _ToTrace(trace)
    logger.addHandler(handler)
    transport.set_log_channel(logger.name)

    def give_back() -> None:
        logger.removeHandler(handler)
        with _lock:
            if logger.name not in _free:
                _free.append(logger.name)

    return give_back
