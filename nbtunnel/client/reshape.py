"""Restarting and removing one forward: what the widget panel's buttons do.

A restarted forward asks for the port it had (a ``-L 0:...`` keeps its
port while that is free) and its new handle takes the old one's place in
:attr:`Tunnel.forwards` and the tables; a removed one is left out of them.
The manager runs one of these at a time, so that two panels clicking the
same toggle start the forward once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from ..errors import ForwardError
from ..grammar.forwards import ForwardSpec
from .handles import Forward, Tunnel

Add = Callable[[Tunnel, Sequence[ForwardSpec]], tuple[Forward, ...]]


def restart(add: Add, forward: Forward) -> Forward:
    """Start a stopped or failed forward again, with its spec; returns the new handle.

    A port the engine chose for ``0`` is asked for again (else any free one
    is taken).  The old handle stays ``stopped`` and names its successor in
    :attr:`Forward.replaced_by`.  A forward that runs, or was restarted
    already, is returned as it is (the one running now).  Raises
    ForwardError if its tunnel is not running or the forward was removed.
    ``add`` is the manager's, which starts forwards on a tunnel.
    """
    current = forward.current
    if current.removed:
        raise ForwardError(f"{current.spec} was removed from its tunnel")
    if current.state not in ("stopped", "failed"):
        return current
    tunnel = current.tunnel
    spec = tunnel.record.asked.get(current, current.spec)
    again = spec
    if spec.listen_path is None and not spec.listen_port and current.listen_port:
        again = replace(spec, listen_port=current.listen_port)
    try:
        (new,) = add(tunnel, [again])
    except ForwardError:
        if again is spec:
            raise
        (new,) = add(tunnel, [spec])  # that port is taken now
    tunnel.record.put_in_place(current, new, spec)
    return new


def remove(forward: Forward) -> bool:
    """Stop a forward and leave it out of its tunnel's forwards, tables and
    panels; returns whether it was the last one shown (its tunnel then
    carries nothing, and the manager stops it).  Removing twice does nothing.
    """
    current = forward.current
    if current.removed:
        return False
    if current.state not in ("stopped", "failed"):
        current.stop()
    return current.tunnel.record.leave_out(current)
