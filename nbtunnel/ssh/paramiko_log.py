"""paramiko's log records under nbtunnel's logger, never on a bare stderr.

paramiko logs on ``paramiko.transport`` and adds no handler: with logging
not configured (the CLI, a notebook kernel), Python's last-resort handler
prints its warnings and errors on stderr, so a server that is not an SSH
server showed "Exception (client): Error reading SSH protocol banner" and a
traceback above nbtunnel's own one-line error.  Each of our transports logs
instead (its channels and packetizer too) to :data:`CHANNEL`,
``nbtunnel.paramiko``, whose records are demoted to DEBUG: what
paramiko has to say about a failure reaches the user as nbtunnel's error,
and the records stay there for whoever logs ``nbtunnel`` at DEBUG.
``nbtunnel``'s NullHandler (nbtunnel/__init__.py) keeps Python's fallback
from ever printing them.
paramiko's own loggers, which other code in the process may use, are left
alone.

Each connection's transport gets a channel of its own
(``nbtunnel.paramiko.vN``, a :class:`Route`), so that its records can follow
the tunnels on it: a tunnel with ``-vvv`` hears paramiko's log of its
connection, from the handshake when it made the connection, from when it
joined when it shares one made by another tunnel, until it lets go.  While
some tunnel hears it, each record goes to every such tunnel's trace and
nowhere else; while none does, to :data:`CHANNEL` as any other.  The
channels are lent out and given back when the connection's thread has
ended, so a tunnel that reconnects all week does not make a logger per
connection; one whose thread would not end is never lent again (it may
still log there).
"""

from __future__ import annotations

import logging
import threading

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


class _Router(logging.Handler):
    """A connection's records: to the traces that hear them, or to CHANNEL."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        # Replaced whole, never changed in place: emit() reads it unlocked.
        self.traces: tuple[Trace, ...] = ()

    def emit(self, record: logging.LogRecord) -> None:
        traces = self.traces
        if not traces:
            # As if logged on the shared channel: its filter decides, and it
            # carries that channel's name up.
            record.name = CHANNEL
            _logger.handle(record)
            return
        text = record.getMessage()
        for trace in traces:
            trace.paramiko(text)


_free: list[str] = []  # channels given back, to lend again
_out: set[str] = set()  # channels lent now
_made = 0
_lock = threading.Lock()


def lent() -> int:
    """How many channels are lent out now (one per connection not ended)."""
    with _lock:
        return len(_out)


def _borrow() -> logging.Logger:
    global _made
    with _lock:
        if _free:
            name = _free.pop()
            _out.add(name)
            return logging.getLogger(name)
        _made += 1
        name = f"{CHANNEL}.v{_made}"
        _out.add(name)
    logger = logging.getLogger(name)
    # Nothing of it reaches the handlers above (the engine's, which would
    # send paramiko's ERRORs on as ERRORs): the router decides; and with the
    # router gone, a late record finds this one rather than Python's fallback.
    logger.propagate = False
    logger.addHandler(logging.NullHandler())
    return logger


class Route:
    """Where one transport's log records (and its channels') go.

    Made before the transport starts, so that its thread logs nothing
    anywhere else; :meth:`end` once that thread has ended (or given up on).
    """

    def __init__(self, transport: paramiko.Transport, trace: Trace = QUIET) -> None:
        self._lock = threading.Lock()
        self._router = _Router()
        self._logger: logging.Logger | None = _borrow()
        self._logger.addHandler(self._router)
        self.hear(trace)
        transport.set_log_channel(self._logger.name)

    def hear(self, trace: Trace) -> None:
        """Send the records to ``trace`` too, if it is a -vvv one."""
        if not trace.wants(3):
            return
        with self._lock:
            if self._logger is not None:
                self._router.traces = (*self._router.traces, trace)
                self._level(self._logger)

    def unhear(self, trace: Trace) -> None:
        """No more records to ``trace`` (one :meth:`hear` undone)."""
        with self._lock:
            traces = list(self._router.traces)
            for n, heard in enumerate(traces):
                if heard is trace:
                    del traces[n]
                    self._router.traces = tuple(traces)
                    if self._logger is not None:
                        self._level(self._logger)
                    return

    def _level(self, logger: logging.Logger) -> None:
        # paramiko's DEBUG records are made only for someone: a -vvv trace,
        # or whoever logs CHANNEL at DEBUG (the level inherited from it).
        logger.setLevel(logging.DEBUG if self._router.traces else logging.NOTSET)

    def end(self, thread_ended: bool) -> None:
        """Hear nothing more, and give the channel back if the transport's
        thread has ended; one whose thread lives on may still log into it,
        so it is let go of, never lent again.  Idempotent."""
        with self._lock:
            logger, self._logger = self._logger, None
            self._router.traces = ()
        if logger is None:
            return
        logger.removeHandler(self._router)
        logger.setLevel(logging.NOTSET)
        with _lock:
            _out.discard(logger.name)
            if thread_ended:
                _free.append(logger.name)

    def __enter__(self) -> Route:
        return self

    def __exit__(self, *exc: object) -> None:
        self.end(thread_ended=True)
