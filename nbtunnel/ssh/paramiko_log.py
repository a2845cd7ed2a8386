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
"""

from __future__ import annotations

import logging

import paramiko

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


def route(transport: paramiko.Transport) -> None:
    """Send ``transport``'s log records (and its channels') to :data:`CHANNEL`;
    before it starts, so that its thread logs nothing anywhere else."""
    transport.set_log_channel(CHANNEL)
