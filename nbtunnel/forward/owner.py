"""OwnerOnly: a forward on loopback serves only the user who opened it.

On a shared machine (The Littlest JupyterHub puts every user on one host,
so do HPC login nodes) loopback is everybody's: another user could connect
to a ``-L`` and reach its private database as this user, or use a ``-D`` as
an open proxy into the remote network with this user's SSH identity.  The
kernel knows who owns the other end of each loopback connection
(``platform/peers.py``); a connection from another user is reset at once,
before anything reaches the target or any SOCKS reply grants it, and
counted as refused.

``-o OwnerOnly``: unset, it is on for forwards that listen on loopback only
and off for ``-g`` or any other address (other hosts are meant to connect
there); ``yes`` turns it on everywhere, where it also refuses every
connection that does not come from this machine; ``no`` turns it off.
Where the system cannot tell who connected (macOS, Windows), the forward's
note says so and every local user can connect, as before; an explicit
``yes`` then fails the forward's start.  A client whose end is gone before
it is looked up (sent and closed at once) is refused too: the kernel keeps
no owner for it, and admitting it would let anyone push one-way data
through.
"""

from __future__ import annotations

import socket
from typing import Literal

from ..errors import ForwardError
from ..platform import peers

Mode = Literal["auto", "yes", "no"]


class OwnerOnly:
    """Whether one listening forward admits a connection; see the module."""

    def __init__(self, mode: Mode, addresses: tuple[str, ...] | None) -> None:
        """``addresses``: where the forward listens; None for a unix socket,
        which its file's mode (0600) keeps to its owner instead.  Raises
        ForwardError for ``yes`` where the system cannot tell who connects."""
        if addresses is None:
            mode = "no"
        loopback = bool(addresses) and all(
            peers.is_loopback(a) for a in addresses or ()
        )
        self.on = mode == "yes" or (mode == "auto" and loopback)
        self.note: str | None = None
        self._uid = peers.my_uid()
        if not self.on:
            return
        why = peers.why_unknown()
        if why is None and self._uid is not None:
            self._owner = peers.user_name(self._uid)
            return
        if mode == "yes":
            raise ForwardError(
                f"OwnerOnly=yes cannot be kept here: {why}; use -o OwnerOnly=no, "
                "or listen on a unix socket (mode 0600)"
            )
        self.on = False
        self.note = (
            f"any user of this machine can connect here: {why} "
            "(OwnerOnly cannot check who connects)"
        )

    def refuses(self, sock: socket.socket, origin: str) -> str | None:
        """Why the connection on ``sock`` (an accepted TCP socket, ``origin``
        its peer's address) is refused; None if it is admitted.  A peer
        already gone is refused without a reason (nothing to count)."""
        if not self.on:
            return None
        # Every connection is looked up, whatever its address: a local user
        # may connect to 127.0.0.1 from this machine's LAN address too.
        try:
            uid = peers.peer_uid(sock)
        except (peers.Unknowable, OSError) as exc:
            # Not knowing who it is must not let them in.
            return f"refused a connection: cannot tell which user made it ({exc})"
        if uid is None:
            if peers.is_loopback(origin):
                return ""  # its end is gone already: nothing to say
            # No end of it here: another host (only a wide bind sees one).
            return (
                f"refused a connection from {origin}: OwnerOnly admits "
                "only this user's connections from this machine"
            )
        if uid == self._uid:
            return None
        return (
            f"refused a connection from another user, {peers.user_name(uid)}: "
            f"this forward serves only {self._owner} "
            "(OwnerOnly; -o OwnerOnly=no lets every local user in)"
        )
