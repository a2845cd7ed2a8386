"""What the widget panel shows, worked out without widgets.

Snapshots in, plain values out: each forward's row (its light, its words,
its counters and live rates, a link for a local web forward), and what a
line typed into the panel's box asks for.  No ipywidgets and no I/O here,
so all of it is tested without a kernel or a browser.
"""

from __future__ import annotations

import html
import shlex
from dataclasses import dataclass, replace

from ...client import display, urls
from ...client.browser import DIRECT, Route
from ...errors import SpecError
from ...grammar.forwards import ForwardSpec
from ...grammar.spec import TunnelSpec, parse
from ...status import ForwardSnapshot, State, TunnelSnapshot

# (tunnel id, forward index): a row's identity across snapshots.
Key = tuple[int, int]


LIGHTS: dict[State, tuple[str, str]] = {
    # The light's word, and its colour in JupyterLab's theme (light or dark).
    "up": ("up", "var(--jp-success-color1, #2e7d32)"),
    "starting": ("connecting", "var(--jp-warn-color1, #f57c00)"),
    "reconnecting": ("reconnecting", "var(--jp-warn-color1, #f57c00)"),
    "failed": ("failed", "var(--jp-error-color1, #c62828)"),
    "stopped": ("stopped", "var(--jp-ui-font-color3, #9e9e9e)"),
}
RUNNING: frozenset[State] = frozenset({"up", "starting", "reconnecting"})

# A rate is worked out over at least this long, so that an extra refresh
# right after a click does not divide a few bytes by a few milliseconds.
RATE_WINDOW = 0.5


@dataclass(frozen=True)
class Row:
    """One forward as the panel shows it."""

    key: Key
    state: State
    on: bool  # the toggle: it runs (or is on its way up)
    light: str  # HTML
    what: str  # HTML: flag, listen → target via host, and the link
    connections: str
    traffic: str
    error: str
    link: str | None


@dataclass
class _Sample:
    at: float
    sent: int
    received: int
    up: float = 0.0
    down: float = 0.0


class Rates:
    """Bytes per second each way, from the counters of successive snapshots."""

    def __init__(self, window: float = RATE_WINDOW) -> None:
        self._window = window
        self._last: dict[Key, _Sample] = {}

    def update(
        self, key: Key, now: float, sent: int, received: int
    ) -> tuple[float, float]:
        """The rates (to the target, from it) as of ``now``."""
        last = self._last.get(key)
        if last is None:
            self._last[key] = _Sample(now, sent, received)
            return 0.0, 0.0
        elapsed = now - last.at
        if elapsed >= self._window:
            up = max(0, sent - last.sent) / elapsed
            down = max(0, received - last.received) / elapsed
            self._last[key] = _Sample(now, sent, received, up, down)
            return up, down
        return last.up, last.down

    def keep(self, keys: set[Key]) -> None:
        """Forget the forwards no longer shown."""
        for key in set(self._last) - keys:
            del self._last[key]


def state_of(tunnel: TunnelSnapshot, forward: ForwardSnapshot) -> State:
    """A forward's state as people read it: a tunnel that is not up says why."""
    return forward.state if tunnel.state == "up" else tunnel.state


def link(forward: ForwardSnapshot, route: Route = DIRECT) -> str | None:
    """Where the browser opens a running local forward to a web server."""
    return urls.open_url(forward, route)


def rate(per_second: float) -> str:
    return f"{display.size(int(per_second))}/s"


def traffic(sent: int, received: int, up: float, down: float) -> str:
    """``↑ 1.2 KiB 300 B/s  ↓ 4.0 MiB 1.1 MiB/s``; a rate only while bytes flow."""
    out = f"↑ {display.size(sent)}" + (f" {rate(up)}" if up >= 1 else "")
    back = f"↓ {display.size(received)}" + (f" {rate(down)}" if down >= 1 else "")
    return f"{out}  {back}"


def row(
    tunnel: TunnelSnapshot,
    forward: ForwardSnapshot,
    rates: Rates,
    now: float,
    route: Route = DIRECT,
) -> Row:
    """The row of one forward of one tunnel, with rates since the last snapshot."""
    state = state_of(tunnel, forward)
    word, colour = LIGHTS[state]
    stats = forward.stats
    up, down = rates.update(
        (tunnel.id, forward.index), now, stats.bytes_to_target, stats.bytes_from_target
    )
    url = link(forward, route) if state == "up" else None
    # Two lines: the two ends, then the host and what else is worth a look.
    second = [f"via {html.escape(tunnel.destination)}"]
    if url is not None:
        second.append(
            f"<a class='nbt-link' href='{html.escape(url)}' target='_blank'"
            f" rel='noopener noreferrer'>open {html.escape(url)} ↗</a>"
        )
    if forward.note:
        second.append(f"<span class='nbt-note'>{html.escape(forward.note)}</span>")
    if tunnel.workers:  # shared with a cluster's workers (nbtunnel.dask)
        second.append(f"<span class='nbt-note'>{html.escape(tunnel.workers)}</span>")
    what = (
        f"<div><b>{html.escape(forward.flag)}</b> {html.escape(display.listen_text(forward))}"
        f" → {html.escape(display.target_text(forward))}</div>"
        f"<div class='nbt-muted'>{' · '.join(second)}</div>"
    )
    return Row(
        key=(tunnel.id, forward.index),
        state=state,
        on=state in RUNNING,
        light=f"<span style='color:{colour}'>●</span> {word}",
        what=what,
        connections=(
            f"{stats.connections_open} open · {stats.connections_total} total"
            + (
                f" · {stats.connections_refused} refused"
                if stats.connections_refused
                else ""
            )
        ),
        traffic=traffic(stats.bytes_to_target, stats.bytes_from_target, up, down),
        error=forward.error or stats.last_error or tunnel.error or "",
        link=url,
    )


def rows(
    tunnels: list[TunnelSnapshot], rates: Rates, now: float, route: Route = DIRECT
) -> list[Row]:
    """Every forward's row, tunnel by tunnel; rates of vanished forwards forgotten."""
    out = [row(t, f, rates, now, route) for t in tunnels for f in t.forwards]
    rates.keep({r.key for r in out})
    return out


def summary(tunnels: list[TunnelSnapshot]) -> str:
    """The panel's heading line."""
    if not tunnels:
        return "no tunnels yet: add one below"
    forwards = sum(len(t.forwards) for t in tunnels)
    up = sum(1 for t in tunnels for f in t.forwards if state_of(t, f) == "up")
    return (
        f"{len(tunnels)} tunnel{'s' * (len(tunnels) != 1)} · "
        f"{forwards} forward{'s' * (forwards != 1)} · {up} up"
    )


_PLACEHOLDER = "nbtunnel-panel.invalid"


def read_new(text: str) -> TunnelSpec | tuple[ForwardSpec, ...]:
    """What the panel's box asks for: a whole line to open, or forwards alone.

    ``-L 0:db:5432 user@host`` is a line (a tunnel of its own, which shares
    the SSH connection of a live tunnel with the same options);
    ``-L 0:db:5432`` alone goes to an open tunnel.  A leading ``%tunnel``
    is allowed, as copied from a cell.  Raises SpecError.
    """
    line = text.strip().removeprefix("%tunnel").strip()
    if not line:
        raise SpecError(
            "type a forward, e.g. -L 0:localhost:8888 user@host, or just "
            "-L 0:localhost:8888 to add it to an open tunnel",
            text=text,
        )
    try:
        return parse(line)
    except SpecError as refused:
        # Forwards without a destination: what a line with one would hold.
        try:
            alone = parse([*shlex.split(line), _PLACEHOLDER])
        except (SpecError, ValueError):
            raise refused from None
        if not alone.forwards or replace(alone, forwards=()) != TunnelSpec(
            destination=alone.destination
        ):
            raise refused from None
        return alone.forwards


def pick_tunnel(live: list[tuple[int, str]], selected: int | None) -> int:
    """Which open tunnel (id, label) takes forwards typed without a destination."""
    if not live:
        raise SpecError(
            "no tunnel is open to add to: write the whole line, "
            "e.g. -L 0:localhost:8888 user@host",
            text="",
        )
    if len(live) == 1:
        return live[0][0]
    ids = [i for i, _ in live]
    if selected is not None and selected in ids:
        return selected
    names = ", ".join(label for _, label in live)
    raise SpecError(f"choose the tunnel to add to ({names})", text="")
