"""The one family of exceptions nbtunnel raises on purpose.

::

    TunnelError                          base of everything below
    ├── SpecError(ValueError)            a malformed command line; nothing was connected
    ├── ConnectError(ConnectionError)    the SSH server could not be reached or set up
    │   ├── AuthenticationError          the server refused every credential offered
    │   └── HostKeyError                 the server's host key is unknown or has changed
    ├── ForwardError                     a forward could not be set up, or one
    │                                    connection through it failed
    ├── EngineError                      the engine process died or spoke nonsense
    ├── WorkerError                      a cluster's worker could not open a shared tunnel
    └── MissingDependencyError(ImportError)  an optional part without its package

Each message is a sentence a person can act on.  paramiko's exceptions never
escape: ``nbtunnel.connection`` turns them into these at its boundary.  The
extra builtin bases let generic ``except ValueError`` / ``except OSError``
code keep working.
"""

from __future__ import annotations


class TunnelError(Exception):
    """Base class of every error nbtunnel raises on purpose."""


class SpecError(TunnelError, ValueError):
    """A command line that does not follow the grammar.

    Raised before anything connects.  ``text`` is the offending part of the
    line (quoted in the message), ``reason`` the short explanation.
    """

    def __init__(self, message: str, *, text: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.text = text
        self.reason = reason or message


class ConnectError(TunnelError, ConnectionError):
    """The SSH connection could not be established or was lost."""


class AuthenticationError(ConnectError):
    """The server refused every key (or other credential) that was offered."""


class HostKeyError(ConnectError):
    """The server's host key is not known, or differs from the known one."""


class ForwardError(TunnelError):
    """A forward could not be set up (bind failed, server refused), or one
    connection through it failed (target refused, channel failed).

    For a channel the server would not open, ``code`` is the RFC 4254
    reason code (0 when it timed out) and ``detail`` the server's words,
    such as "Connection refused"; a SOCKS proxy answers from them.
    """

    def __init__(
        self, message: str, *, code: int | None = None, detail: str = ""
    ) -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail


class UrlError(ForwardError, ValueError):
    """A URL that cannot point at a forward: a malformed template, or a forward
    with no end on this machine for it (a -R, a -D, a stopped one)."""


class EngineError(TunnelError):
    """The engine process that runs the forwards failed or went away."""


class WorkerError(TunnelError):
    """A Dask worker could not open its copy of a shared tunnel
    (``nbtunnel.dask``); the message names the worker and says why, as the
    same line would say it here.  One argument, so that it crosses Dask's
    pickles whole."""


class MissingDependencyError(TunnelError, ImportError):
    """An optional part (the widget panel) was asked for without the package
    it needs; the message names the ``pip install`` that brings it."""


# The names the engine protocol may carry across the pipe; anything else
# arriving from the engine becomes a plain TunnelError.
ERROR_TYPES: dict[str, type[TunnelError]] = {
    cls.__name__: cls
    for cls in (
        TunnelError,
        SpecError,
        ConnectError,
        AuthenticationError,
        HostKeyError,
        ForwardError,
        EngineError,
    )
}
