"""How tunnels and forwards look: aligned text, and a small HTML status table."""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ..grammar.forwards import bracketed
from ..status import ForwardSnapshot, ForwardStats, TunnelSnapshot
from . import fit, urls
from .browser import DIRECT, Route

_STATE_COLOURS = {
    "up": "var(--jp-success-color1, #2e7d32)",
    "starting": "var(--jp-warn-color1, #f57c00)",
    "reconnecting": "var(--jp-warn-color1, #f57c00)",
    "failed": "var(--jp-error-color1, #c62828)",
    "stopped": "var(--jp-ui-font-color2, #757575)",
}


def _hostport(host: str | None, port: int | None) -> str:
    return f"{bracketed(host or '*')}:{port}"


def listen_text(f: ForwardSnapshot) -> str:
    """Where the forward listens, saying on which machine."""
    where = "the server" if f.kind == "remote" else "this machine"
    place = f.listen_path or _hostport(f.listen_host, f.listen_port)
    return f"{where} {place}"


def target_text(f: ForwardSnapshot) -> str:
    """Where connections go; ``localhost`` in a -L target is the server's."""
    if f.target_host is None and f.target_path is None:
        if f.kind == "dynamic":
            return "SOCKS: anywhere the server reaches"
        return "SOCKS: anywhere this machine reaches"
    who = "this machine connects to" if f.kind == "remote" else "the server connects to"
    return f"{who} {f.target_path or _hostport(f.target_host, f.target_port)}"


def size(n: int) -> str:
    """Bytes in a unit a person reads at a glance."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def connections(stats: ForwardStats) -> str:
    """open/total, and how many other users were refused (OwnerOnly)."""
    text = f"{stats.connections_open}/{stats.connections_total}"
    if stats.connections_refused:
        text += f" ({stats.connections_refused} refused)"
    return text


def uptime(started_at: float, now: float | None = None) -> str:
    seconds = max(0, int((now or time.time()) - started_at))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


_COLUMNS = (
    "tunnel",
    "forward",
    "listens on",
    "→ target",
    "via",
    "state",
    "conns",
    "↑ sent",
    "↓ received",
    "last error",
    "uptime",
)


def _rows(tunnels: list[TunnelSnapshot]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for t in tunnels:
        for f in t.forwards:
            s = f.stats
            rows.append(
                (
                    t.label,
                    f.flag,
                    listen_text(f),
                    target_text(f),
                    t.destination,
                    f.state if t.state == "up" else t.state,
                    connections(s),
                    size(s.bytes_to_target),
                    size(s.bytes_from_target),
                    f.error or s.last_error or (t.error or ""),
                    uptime(t.started_at) if f.state == "up" else "",
                )
            )
        if not t.forwards:
            rows.append(
                (
                    t.label,
                    "",
                    "",
                    "",
                    t.destination,
                    t.state,
                    "",
                    "",
                    "",
                    t.error or "",
                    "",
                )
            )
    return rows


def text_table(
    tunnels: list[TunnelSnapshot], route: Route = DIRECT, width: int | None = None
) -> str:
    """An aligned plain-text table, one row per forward; under it where a
    browser opens each web -L (through ``route``) and each -R to share.

    A table wider than ``width`` (None: no limit) becomes one block of
    lines per forward, each line within it: a table that a terminal wraps
    is unreadable."""
    if not tunnels:
        return "no tunnels"
    rows = [_COLUMNS, *_rows(tunnels)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in rows
    ]
    if width is not None and max(len(line) for line in lines) > width:
        lines = [line for row in rows[1:] for line in _block(row, width)]
    opens = [
        line
        for url, which in _opens(tunnels, route)
        for line in fit.wrap(f"open {url}  ({which})", width, "", "    ")
    ]
    workers = [
        line
        for t in tunnels
        if t.workers
        for line in fit.wrap(f"tunnel {t.label}: {t.workers}", width, "", "    ")
    ]
    return "\n".join(lines + opens + share_lines(tunnels, width) + workers)


def _block(row: tuple[str, ...], width: int) -> list[str]:
    """One row of the table as a few lines: the columns' names before
    their values, so it reads as the table does."""
    cell = dict(zip(_COLUMNS, row, strict=True))
    state = f"{cell['state']} {cell['uptime']}".strip()  # "up 2m05s"
    head = "  ".join(part for part in (cell["tunnel"], cell["forward"], state) if part)
    lines = fit.wrap(f"{head}  via {cell['via']}", width, "", "    ")
    pad = " " * 14
    for name in ("listens on", "→ target"):
        if cell[name]:
            lines += fit.wrap(f"{name:<12}{cell[name]}", width, "  ", pad)
    if cell["conns"]:
        stats = (f"{name} {cell[name]}" for name in ("conns", "↑ sent", "↓ received"))
        lines += fit.wrap("   ".join(stats), width, "  ", "    ")
    if cell["last error"]:
        lines += fit.wrap(f"{'last error':<12}{cell['last error']}", width, "  ", pad)
    return lines


def html_table(tunnels: list[TunnelSnapshot], route: Route = DIRECT) -> str:
    """The same table as HTML, coloured with JupyterLab's theme variables."""
    if not tunnels:
        return "<em>no tunnels</em>"
    head = "".join(
        f"<th style='text-align:left'>{html.escape(c)}</th>" for c in _COLUMNS
    )
    body = []
    for row in _rows(tunnels):
        cells = []
        for i, cell in enumerate(row):
            text = html.escape(cell)
            if _COLUMNS[i] == "state":
                colour = _STATE_COLOURS.get(cell, "inherit")
                text = f"<span style='color:{colour}'>●</span> {text}"
            cells.append(f"<td style='text-align:left'>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        "<table class='nbtunnel'><thead><tr>"
        + head
        + "</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table>"
        + "".join(
            f"<div class='nbtunnel-open'>open <a href='{html.escape(url)}' "
            f"target='_blank' rel='noopener'><code>{html.escape(url)}</code></a> "
            f"({html.escape(which)})</div>"
            for url, which in _opens(tunnels, route)
        )
        + share_html(tunnels)
        + "".join(
            f"<div class='nbtunnel-workers'>tunnel {html.escape(t.label)}:"
            f" {html.escape(t.workers)}</div>"
            for t in tunnels
            if t.workers
        )
    )


def _opens(tunnels: list[TunnelSnapshot], route: Route) -> list[tuple[str, str]]:
    """(URL, which forward) of every web -L that is up, for the browser."""
    found = []
    for t in tunnels:
        for f in t.forwards:
            url = urls.open_url(f, route) if t.state == "up" else None
            if url is not None:
                found.append((url, f"{f.spec}, tunnel {t.label}"))
    return found


def _shares(tunnels: list[TunnelSnapshot]) -> list[tuple[str, str, str]]:
    """(URL, which forward, advice) of every -R that is up, for people elsewhere."""
    found = []
    for t in tunnels:
        for f in t.forwards:
            there = urls.share(f, t.destination) if t.state == "up" else None
            if there is not None:
                found.append((there.url, f"{f.spec}, tunnel {t.label}", there.advice))
    return found


def share_lines(tunnels: list[TunnelSnapshot], width: int | None = None) -> list[str]:
    """Under a text table: the URL to share for each -R that is up, and what
    the server must allow for others to reach it, wrapped to ``width``."""
    lines = []
    for url, which, advice in _shares(tunnels):
        lines += fit.wrap(f"share {url}  ({which})", width, "", "    ")
        lines += fit.wrap(advice, width, "  ")
    return lines


def share_html(tunnels: list[TunnelSnapshot]) -> str:
    """share_lines() as HTML: a link to copy, the advice muted under it."""
    parts = []
    for url, which, advice in _shares(tunnels):
        link = html.escape(url)
        note = (
            "<br><small style='color:var(--jp-ui-font-color2, #757575)'>"
            f"{html.escape(advice)}</small>"
        )
        parts.append(
            f"<div class='nbtunnel-share'>share <a href='{link}' target='_blank' "
            f"rel='noopener'><code>{link}</code></a> ({html.escape(which)}){note}</div>"
        )
    return "".join(parts)


def html_events(events: Iterable[str]) -> str:
    """A tunnel's recent events under its table, small and muted."""
    items = "".join(f"<li>{html.escape(e)}</li>" for e in events)
    if not items:
        return ""
    return (
        "<details class='nbtunnel-events'><summary>recent events</summary>"
        f"<ul style='margin:0;color:var(--jp-ui-font-color2, #757575)'>{items}</ul>"
        "</details>"
    )


def cancelled_line(f: ForwardSnapshot, tunnel: str) -> str:
    """What ``%tunnel -KL PORT`` says once done: the forward by its spec and
    the tunnel by its label, as the tables name them (ssh's ~C confirms too)."""
    return f"cancelled {f.spec} on tunnel {tunnel} (it listened on {listen_text(f)})"


def forward_line(f: ForwardSnapshot, destination: str) -> str:
    """One line for a forward's repr and the CLI."""
    line = f"{f.flag} {listen_text(f)} → {target_text(f)} via {destination} [{f.state}]"
    return f"{line} ({f.note})" if f.note else line


def _forward_name(message: Mapping[str, Any]) -> str:
    # Its spec, as the tables show it ("-L 0:localhost:80, tunnel db"); an
    # event that carries none has only its index to go by.
    return f"forward {message.get('spec') or message.get('forward')}"


def event_line(message: Mapping[str, Any]) -> str | None:
    """One line for an engine event (the CLI's output, a tunnel's event list),
    naming tunnels and forwards as the tables do: by label and by spec."""
    kind = message.get("event")
    if kind == "connection":
        return f"connection {message.get('origin')} → {message.get('target')}"
    if kind == "connection_closed":
        up = size(int(message.get("sent", 0)))
        down = size(int(message.get("received", 0)))
        return f"closed {message.get('origin')} → {message.get('target')} (↑ {up}, ↓ {down})"
    if kind == "allocated":
        # OpenSSH's words, which scripts already look for.
        target = message.get("target")
        what = f"remote forward to {target}" if target else "remote SOCKS proxy"
        return f"Allocated port {message.get('port')} for {what}"
    if kind == "forward_added":
        return f"{_forward_name(message)} added"
    if kind == "forward_stopped":
        return f"{_forward_name(message)} stopped"
    if kind == "forward_failed":
        return f"{_forward_name(message)} failed: {message.get('error')}"
    if kind == "forward_waiting":  # a -R the server still holds after a reconnect
        return f"{_forward_name(message)} waiting: {message.get('error')}"
    if kind == "forward_restored":
        tries = int(message.get("tries", 1))
        return (
            f"{_forward_name(message)} back on port {message.get('port')} "
            f"after {float(message.get('seconds', 0)):.1f} s "
            f"({tries} {'try' if tries == 1 else 'tries'})"
        )
    if kind == "reconnect_failed":
        return (
            f"reconnect try {message.get('attempt')} failed: {message.get('error')}; "
            f"next in {float(message.get('retry_in', 0)):.1f} s"
        )
    if kind == "reconnected":
        tries = int(message.get("tries", 1))
        return (
            f"reconnected after {float(message.get('seconds', 0)):.1f} s "
            f"({tries} {'try' if tries == 1 else 'tries'})"
        )
    if kind == "connection_failed":
        return f"connection failed: {message.get('error')}"
    if kind == "connection_refused":
        return f"connection refused: {message.get('error')}"
    if kind == "engine_exited":
        return str(message.get("error"))
    if kind == "warning":
        return f"warning: {message.get('message')}"
    if kind == "state":
        error = message.get("error")
        tunnel = message.get("label") or message.get("tunnel")
        return f"tunnel {tunnel} {message.get('state')}" + (
            f": {error}" if error else ""
        )
    if kind == "log" and int(message.get("level", 0)) >= 30:
        return f"{message.get('logger')}: {message.get('message')}"
    return None
