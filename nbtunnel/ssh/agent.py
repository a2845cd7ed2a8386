"""The connection to ssh-agent that a login offers keys from.

The socket is the settings' (``IdentityAgent``, by default the caller's
``SSH_AUTH_SOCK``), connected when the agent's keys are first asked for
and held until :meth:`Agent.close`: the agent signs the login when the
server accepts one of its keys.
"""

from __future__ import annotations

import socket

import paramiko
from paramiko.agent import AgentSSH

from .._paramiko import agent as _agent


class Agent:
    """ssh-agent at ``path`` (None: no agent), while a login needs it."""

    def __init__(self, path: str | None, timeout: float) -> None:
        self.path = path
        self._timeout = timeout
        self._client: AgentSSH | None = None

    def keys(self) -> tuple[paramiko.PKey, ...]:
        """The agent's keys; raises OSError or SSHException if it does not answer."""
        if not self.path:
            return ()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
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
