"""How this system reaches ssh-agent: a unix socket, or Windows' own agents.

The client itself is paramiko's, in nbtunnel.ssh.agent (only the SSH layer
speaks to paramiko); this says which transport it takes.
"""

from __future__ import annotations

import os
from typing import Literal

from . import sockets

# Windows' OpenSSH agent listens on this named pipe; Pageant has a window
# of its own.  paramiko's Agent() finds either, and only on Windows.
WINDOWS_PIPE = r"\\.\pipe\openssh-ssh-agent"

Transport = Literal["unix", "system", "none", "unsupported"]


def default_path() -> str | None:
    """The agent when the settings name none (``IdentityAgent`` unset or
    ``SSH_AUTH_SOCK``): the caller's ``SSH_AUTH_SOCK`` where agents are unix
    sockets; Windows' own agent otherwise (``SSH_AUTH_SOCK`` there is some
    other program's unix socket, which paramiko does not read on Windows
    either)."""
    if sockets.unix_family() is not None:
        return os.environ.get("SSH_AUTH_SOCK") or None
    return WINDOWS_PIPE


def transport(path: str | None) -> Transport:
    """How to reach the agent at ``path`` (None: no agent).

    ``"unix"``: connect a unix socket to ``path``.  ``"system"``: the
    system's own agent (Windows: the named pipe or Pageant, which
    ``paramiko.Agent()`` tries).  ``"none"``: no agent.
    ``"unsupported"``: ``path`` names a unix socket on a system that has
    none.
    """
    if not path:
        return "none"
    if sockets.unix_family() is not None:
        return "unix"
    return "system" if path.lower() == WINDOWS_PIPE else "unsupported"
