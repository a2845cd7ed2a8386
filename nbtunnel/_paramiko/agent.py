"""An ssh-agent client on a socket nbtunnel connected itself.

paramiko's ``Agent()`` only reads ``SSH_AUTH_SOCK`` of this process; the
caller's socket path (``IdentityAgent``, or the caller's ``SSH_AUTH_SOCK``)
arrives in the settings instead.  Its base class ``AgentSSH`` takes a
socket connected elsewhere only through ``_connect()`` and lets go of it
only through ``_close()``: ``Agent.close()``, the public one, belongs to
the subclass that finds its socket itself.
"""

from __future__ import annotations

import socket

from paramiko.agent import AgentSSH


def on_socket(sock: socket.socket) -> AgentSSH:
    """An agent client on ``sock``, which asks the agent for its keys."""
    agent = AgentSSH()
    agent._connect(sock)  # type: ignore[attr-defined]
    return agent


def close(agent: AgentSSH) -> None:
    """Close the agent's socket (its keys can sign no more)."""
    agent._close()  # type: ignore[attr-defined]
