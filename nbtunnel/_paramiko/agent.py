"""An ssh-agent client on a socket nbtunnel connected itself.

paramiko's ``Agent()`` only reads ``SSH_AUTH_SOCK`` of this process; the
caller's socket path (``IdentityAgent``, or the caller's ``SSH_AUTH_SOCK``)
arrives in the settings instead.  Its base class ``AgentSSH`` takes a
socket connected elsewhere only through ``_connect()`` and lets go of it
only through ``_close()``: ``Agent.close()``, the public one, belongs to
the subclass that finds its socket itself.  Where ``probe`` found those two
gone, paramiko's ``Agent()`` serves when the socket is this process's
``SSH_AUTH_SOCK`` anyway, and any other socket is refused in one line.
"""

from __future__ import annotations

import contextlib
import os
import socket

import paramiko
from paramiko.agent import AgentSSH

from . import probe


def on_socket(sock: socket.socket) -> AgentSSH:
    """An agent client on ``sock``, which asks the agent for its keys.

    Raises SSHException (and closes ``sock``) where this paramiko cannot
    speak to an agent on a socket of ours.
    """
    if probe.available("agent"):
        agent = AgentSSH()
        agent._connect(sock)  # type: ignore[attr-defined]
        return agent
    peer = ""
    with contextlib.suppress(OSError):
        peer = str(sock.getpeername())
    sock.close()
    if peer and peer == os.environ.get("SSH_AUTH_SOCK"):
        return paramiko.Agent()
    raise paramiko.SSHException(probe.why_not("agent"))


def close(agent: AgentSSH) -> None:
    """Close the agent's socket (its keys can sign no more)."""
    if isinstance(agent, paramiko.Agent):
        agent.close()
    else:
        agent._close()  # type: ignore[attr-defined]
