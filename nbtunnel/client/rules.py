"""What a line means among the tunnels already open: the rules every face shares.

A notebook cell runs again, a second cell names the same server, a port is
asked for that another forward holds.  ssh with ``ControlMaster`` answers
these one way; so does nbtunnel, through the manager, for the API, the
magic, the CLI and the panel alike:

- the same line again is the tunnel already open (same ports), also while
  it reconnects;
- the same destination with the same options joins that tunnel and its SSH
  connection (as does a destination that is an open tunnel's name);
- a fixed port that another forward holds is refused, naming the holder;
- ``-K`` with ``[bind:]port`` (or a socket's path) finds the one forward
  to cancel.

Pure functions over snapshots: the manager fetches, decides here, then acts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ..errors import ForwardError, SpecError
from ..grammar.forwards import ForwardSpec, parse_cancel
from ..grammar.spec import TunnelSpec
from ..status import ForwardSnapshot, TunnelSnapshot

if TYPE_CHECKING:
    from .handles import Tunnel

# Every tunnel the manager holds a handle of, with one snapshot of it: a
# Forward's state or stats is a round trip to the engine each time it is
# read, this is one for them all.
Live = list[tuple["Tunnel", TunnelSnapshot]]
# A tunnel in these states serves, or will again: a line that matches it
# is that tunnel.
_OPEN = ("starting", "up", "reconnecting")
_ANY = ("", "*", "0.0.0.0", "::")


def connection_key(spec: TunnelSpec) -> TunnelSpec:
    """The line without its forwards (and -v): what decides the SSH connection."""
    return replace(spec, forwards=(), verbose=0)


def same_connection(live: TunnelSpec, new: TunnelSpec) -> bool:
    """Same destination and the same options: one SSH connection serves both,
    as OpenSSH's ControlMaster would share it."""
    return connection_key(live) == connection_key(new)


def already_open(live: Live, spec: TunnelSpec, name: str | None) -> Tunnel | None:
    """The open tunnel this very line opened: the cell ran again."""
    for tunnel, snap in live:
        if (
            snap.state in _OPEN
            and tunnel.spec.text == spec.text
            and name in (None, tunnel.name)
        ):
            return tunnel
    return None


def joined(
    live: Live, spec: TunnelSpec, name: str | None
) -> tuple[Tunnel, TunnelSnapshot] | None:
    """The open tunnel whose connection this line joins, if any.

    A new name asks for a tunnel of its own (which still shares the SSH
    connection, in the engine); an existing name adds to that tunnel.
    """
    for tunnel, snap in live:
        if snap.state not in _OPEN:
            continue
        if name is None:
            joins = tunnel.name == spec.destination.text or same_connection(
                tunnel.spec, spec
            )
        else:
            joins = tunnel.name == name and same_connection(tunnel.spec, spec)
        if joins:
            return tunnel, snap
    return None


def label(spec: TunnelSpec, name: str | None, taken: set[str]) -> str:
    """The name a new tunnel shows in tables: ``name``, which must be free,
    or its host's first label, made unique (``db``, ``db-2``)."""
    if name is not None:
        if name in taken:
            raise SpecError(f"a tunnel named '{name}' is open already", text=name)
        return name
    host = spec.destination.host
    base = host.split(".")[0] if not host.replace(".", "").isdigit() else host
    label, n = base, 1
    while label in taken:
        n += 1
        label = f"{base}-{n}"
    return label


def missing(
    snap: TunnelSnapshot, forwards: Sequence[ForwardSpec]
) -> tuple[ForwardSpec, ...]:
    """The forwards of a joining line that the tunnel does not run yet."""
    running = {f.spec for f in snap.forwards if f.state in _OPEN}
    return tuple(f for f in forwards if str(f) not in running)


def _holds(tunnel: TunnelSnapshot, forward: ForwardSnapshot) -> bool:
    """Whether ``forward`` still holds its listening port or socket."""
    if forward.state in _OPEN:
        return True
    # A failed tunnel keeps its listeners (refusing at once) until stopped;
    # a forward that failed alone holds nothing.
    return tunnel.state == "failed" and forward.error == tunnel.error


def _clash(a: ForwardSpec | ForwardSnapshot, b: ForwardSpec) -> bool:
    """Whether two forwards want the same port (or socket) on the same side."""
    # -L/-D ports are on this machine; -R ports on the server.
    if (a.kind == "remote") != (b.kind == "remote"):
        return False
    if b.listen_path is not None:
        return a.listen_path == b.listen_path
    if a.listen_port != b.listen_port:
        return False
    # Two different addresses can share a port (127.0.0.1 and ::1); the
    # default, a wildcard or a name may cover either, so they clash.
    return not (_address(a.listen_host) and _address(b.listen_host)) or (
        a.listen_host == b.listen_host
    )


def _address(host: str | None) -> bool:
    """Whether ``host`` is one IP address (not a wildcard, a name or the default)."""
    if host is None or host in _ANY:
        return False
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _stop_hint(tunnel: Tunnel, snap: TunnelSnapshot, held: ForwardSnapshot) -> str:
    if snap.state == "failed":
        return (
            f"it failed ({snap.error}) but listens until stopped: stop it first "
            f"(%tunnel stop {tunnel.name}, or its Tunnel.stop())"
        )
    where = held.listen_path or held.listen_port
    return (
        f"stop that forward first (%tunnel -K{held.spec[1]} {where} in a "
        "notebook, or its Forward.stop()) or pick another port (0 for any free one)"
    )


def check_ports(forwards: Sequence[ForwardSpec], spec: TunnelSpec, live: Live) -> None:
    """A fixed port (or socket) another forward holds is refused, naming who
    holds it: a forward of an open tunnel (of any, for -L/-D; of one on the
    same connection, for -R: the manager knows no other on that server), or
    an earlier forward of the same request."""
    for i, wanted in enumerate(forwards):
        if not wanted.listen_port and wanted.listen_path is None:
            continue
        for earlier in forwards[:i]:
            if _clash(earlier, wanted):
                raise ForwardError(
                    f"{_what(wanted)} of '{wanted}' is asked for twice: "
                    f"'{earlier}' of the same line holds it; pick another "
                    f"{'socket' if wanted.listen_path else 'port (0 for any free one)'}"
                )
        for tunnel, snap in live:
            if wanted.kind == "remote" and not same_connection(tunnel.spec, spec):
                continue
            for held in snap.forwards:
                if _holds(snap, held) and _clash(held, wanted):
                    raise ForwardError(
                        f"{_what(wanted)} of '{wanted}' is held by tunnel "
                        f"'{tunnel.name}' ({held.spec}); {_stop_hint(tunnel, snap, held)}"
                    )


def _what(forward: ForwardSpec) -> str:
    if forward.listen_path is not None:
        return f"socket {forward.listen_path}"
    return f"port {forward.listen_port}"


def listens_on(forward: ForwardSnapshot, wanted: ForwardSpec) -> bool:
    """Whether a live forward listens where ``wanted`` (of ssh's -K) names:
    ``[host:]port`` or a unix socket's path; one reconnecting counts (a -R
    asking the server again for its port)."""
    live = forward.state in ("up", "reconnecting")
    if forward.kind != wanted.kind or not live:
        return False
    if wanted.listen_path is not None:
        return forward.listen_path == wanted.listen_path
    if forward.listen_port != wanted.listen_port:
        return False
    host = wanted.listen_host
    if host is None or forward.listen_host == host:
        return True
    return host in ("*", "") and forward.listen_host in _ANY


def to_cancel(live: Live, flag: str, listen: str) -> tuple[Tunnel, int]:
    """The tunnel and forward index that ``-KL``/``-KR``/``-KD`` (or -L, -R,
    -D) with ``[bind_address:]port`` (or a -L or -R socket's path) names;
    SpecError if no live forward."""
    wanted = parse_cancel(flag, listen)
    for tunnel, snap in live:
        for forward in snap.forwards:
            if listens_on(forward, wanted):
                return tunnel, forward.index
    raise SpecError(
        f"no {wanted.flag} forward listens on {listen} (the table of tunnels: "
        "%tunnel, or nbtunnel.tunnels())",
        text=listen,
    )
