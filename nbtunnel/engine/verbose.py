"""What the engine says of a tunnel opened with ``-v``: its trace, and its forwards.

The trace's lines leave as ``log`` events of the tunnel (its id and name,
the verbosity of each line, INFO for -v and DEBUG for more), in the engine
process and inline alike; the caller logs them and shows them to whoever
watches the tunnel (``client/events.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..ssh.trace import Trace
from ..status import ForwardSnapshot


def tunnel_trace(
    emit: Callable[..., None], tunnel_id: int, name: str, verbosity: int
) -> Trace:
    """The trace of tunnel ``tunnel_id``, at the verbosity of its command line."""

    def log(level: int, text: str, source: str) -> None:
        emit(
            "log",
            tunnel=tunnel_id,
            name=name,
            verbosity=level,
            # The caller's logging decides again what it keeps.
            level=logging.INFO if level == 1 else logging.DEBUG,
            logger=f"nbtunnel.{source}",
            message=text,
        )

    return Trace(verbosity, log)


def forwards_up(trace: Trace, forwards: tuple[ForwardSnapshot, ...]) -> None:
    """Each forward that started, and each that failed (ExitOnForwardFailure
    no), as ssh -v says "Local forwarding listening on ..."."""
    if trace.wants(1):
        for forward in forwards:
            trace(1, "%s", _said(forward))


def _said(f: ForwardSnapshot) -> str:
    if f.state == "failed":
        return f"Forward {f.spec} failed: {f.error}"
    here = f.listen_path or f"{f.listen_host or 'localhost'} port {f.listen_port}"
    if f.target_path or f.target_host:
        there = f.target_path or f"{f.target_host}:{f.target_port}"
    else:
        there = "where each SOCKS client asks"
    if f.kind == "local":
        return f"Local forwarding listening on {here}: the server connects to {there}"
    if f.kind == "dynamic":
        return f"Local SOCKS proxy listening on {here}: the server connects {there}"
    return f"Remote forwarding on the server's {here}: this machine connects to {there}"
