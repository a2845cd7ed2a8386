"""The connection to ssh-agent that a login offers keys from.

The socket is the settings' (``IdentityAgent``, by default the caller's
``SSH_AUTH_SOCK``), connected when the agent's keys are first asked for
and held until :meth:`Agent.close`: the agent signs the login when the
server accepts one of its keys.  Where there are no unix sockets
(Windows), the agent is the system's own: OpenSSH's named pipe or
Pageant, both of which ``paramiko.Agent()`` speaks.
"""

from __future__ import annotations

import socket

import paramiko
from paramiko.agent import AgentSSH

from .._paramiko import agent as _agent
from ..errors import ConnectError
from ..platform import agent as platform_agent
from ..platform import sockets


class Agent:
    """ssh-agent at ``path`` (None: no agent), while a login needs it."""

    def __init__(self, path: str | None, timeout: float) -> None:
        self.path = path
        self._timeout = timeout
        self._client: AgentSSH | None = None
        self._system: paramiko.Agent | None = None

    def keys(self) -> tuple[paramiko.PKey, ...]:
        """The agent's keys; raises OSError or SSHException if it does not answer
        (ConnectError, an OSError, if this system cannot reach it at all)."""
        how = platform_agent.transport(self.path)
        if how == "none":
            return ()
        if how == "system":
            self._system = paramiko.Agent()
            return tuple(self._system.get_keys())
        if how == "unsupported":
            raise ConnectError(
                f"IdentityAgent {self.path} is a unix socket, which this system "
                "does not have: leave IdentityAgent unset for Windows' own agent "
                "(OpenSSH's or Pageant)"
            )
        family = sockets.unix_family()
        assert family is not None and self.path
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(self._timeout)
            sock.connect(self.path)
            client = _agent.on_socket(sock)
        except (OSError, paramiko.SSHException):
            sock.close()
            raise
        self._client = client
        return tuple(client.get_keys())

    def close(self) -> None:
        if self._client is not None:
            _agent.close(self._client)
            self._client = None
        if self._system is not None:
            self._system.close()
            self._system = None
