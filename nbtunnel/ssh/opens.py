"""Opening a connection's channels, and paramiko's failures said as nbtunnel's.

:func:`open_now` waits for the server's answer; :func:`open_later` does not
(``on_done`` gets the channel or the error, from paramiko's thread, see
``_paramiko/opening.py``), which is how a forward keeps many opens in
flight with no thread waiting on any.  Either way a refusal becomes a
ForwardError carrying the server's words, and a lost connection a
ConnectError.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import paramiko

from .._paramiko.opening import Opening, Threaded
from .._paramiko.transport import DIRECT, Transport
from ..errors import ConnectError, ForwardError
from ..grammar.hostnames import host_name_problem
from .printable import escaped

__all__ = [
    "Done",
    "Opener",
    "Opening",
    "Threaded",
    "open_error",
    "open_later",
    "open_now",
]

# Gets the channel or the error (ForwardError, ConnectError), in paramiko's
# thread: it must return at once.
Done = Callable[[Any], None]

# RFC 4254 section 5.1 reason codes for a refused channel.
_OPEN_FAILURES = {
    1: "administratively prohibited",
    2: "connect failed",
    3: "unknown channel type",
    4: "resource shortage",
}


def open_error(target: str, where: str, timeout: float, exc: BaseException) -> Any:
    """The error to report for ``exc`` ending an open of a channel to ``where``.

    What is not paramiko's (a ForwardError of the gate's, a thread that
    would not start) is returned as it is.
    """
    if isinstance(exc, paramiko.ChannelException):
        # The server's own reason ("Connection refused"): its words, escaped.
        detail = escaped(exc.text or "")
        reason = detail or _OPEN_FAILURES.get(exc.code, f"code {exc.code}")
        hint = ""
        if exc.code == 1:
            hint = (
                "; the server's sshd_config forbids it (AllowTcpForwarding, "
                "AllowStreamLocalForwarding, PermitOpen)"
            )
        return ForwardError(
            f"the server could not connect to {where} as the target: {reason}{hint}",
            code=exc.code,
            detail=detail,
        )
    if isinstance(exc, paramiko.SSHException) and "timeout" in str(exc).lower():
        return ForwardError(
            f"the server did not connect to {where} within {timeout:g} s", code=0
        )
    if isinstance(exc, (paramiko.SSHException, EOFError, OSError)):
        # paramiko raises a bare EOFError() on a connection that went away.
        why = escaped(str(exc) or type(exc).__name__)
        return ConnectError(f"the SSH connection to {target} was lost: {why}")
    return exc


def open_now(
    t: Transport,
    target: str,
    kind: str,
    fields: Sequence[str | int],
    where: str,
    timeout: float,
) -> paramiko.Channel:
    """Open a channel and wait for it; raises ForwardError or ConnectError."""
    try:
        return t.open(kind, fields, timeout)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise open_error(target, where, timeout, exc) from None


def open_later(
    t: Transport,
    target: str,
    kind: str,
    fields: Sequence[str | int],
    where: str,
    timeout: float,
    on_done: Done,
) -> Opening:
    """Start opening a channel; the caller keeps the deadline (``give_up()``).

    Raises ConnectError if the connection is closed, RuntimeError if the
    fallback's thread cannot start.
    """

    def done(result: Any) -> None:
        if isinstance(result, BaseException):
            result = open_error(target, where, timeout, result)
        on_done(result)

    try:
        return t.open_async(kind, fields, timeout, done)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise open_error(target, where, timeout, exc) from None


def _where(host: str, port: int) -> str:
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    # The server only says "Name or service not known"; this says why.
    problem = host_name_problem(host)
    return f"{where} ({problem})" if problem else where


class Opener:
    """The channel opens of a Connection, which provides ``_live()`` (its
    transport, or ConnectError) and ``settings.target``."""

    settings: Any

    def _live(self) -> Transport:
        raise NotImplementedError

    def open_tcpip(
        self, host: str, port: int, origin: tuple[str, int], timeout: float
    ) -> paramiko.Channel:
        """Open a ``direct-tcpip`` channel: the server connects to host:port."""
        fields, where = (host, port, *origin), _where(host, port)
        return open_now(
            self._live(), self.settings.target, "direct-tcpip", fields, where, timeout
        )

    def open_streamlocal(self, path: str, timeout: float) -> paramiko.Channel:
        """Open a ``direct-streamlocal`` channel: the server connects to a unix socket."""
        where = f"the unix socket {path}"
        return open_now(
            self._live(), self.settings.target, DIRECT, (path, "", 0), where, timeout
        )

    def open_tcpip_async(
        self,
        host: str,
        port: int,
        origin: tuple[str, int],
        timeout: float,
        on_done: Done,
    ) -> Opening:
        """As open_tcpip(), without waiting: ``on_done`` gets the channel or
        the error (see open_later()); the caller gives up at its deadline."""
        fields, where = (host, port, *origin), _where(host, port)
        t, target = self._live(), self.settings.target
        return open_later(t, target, "direct-tcpip", fields, where, timeout, on_done)

    def open_streamlocal_async(
        self, path: str, timeout: float, on_done: Done
    ) -> Opening:
        """As open_streamlocal(), without waiting (see open_tcpip_async())."""
        t, where = self._live(), f"the unix socket {path}"
        fields = (path, "", 0)
        return open_later(
            t, self.settings.target, DIRECT, fields, where, timeout, on_done
        )
