"""The widget panel (``nbtunnel.panel()``, ``%tunnel panel``): a live view of a manager.

A panel holds no tunnel state of its own.  What it shows comes from the
manager's handles and snapshots, and what its buttons do goes to the
manager (``Forward.stop``, ``Manager.restart_forward``,
``Manager.remove_forward``, ``Manager.open``/``add``), so ``%tunnel``'s
table and every other panel show the same.

One background thread, the ticker, refreshes every live panel about once a
second with one snapshot request per manager, and sets only the widget
traits whose values changed (ipywidgets then sends only those).  It starts
with the first panel and ends when no panel is left: panels are held
weakly, and one that is closed, or whose manager closed, is let go.
"""

from __future__ import annotations

import html
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from ...client.manager import Forward, Manager, Tunnel
from ...errors import TunnelError
from ...status import State, TunnelSnapshot
from . import view

logger = logging.getLogger("nbtunnel.widget")

TICK_SECONDS = 1.0

# Each live tunnel's handle with one snapshot of it (a single engine request
# for them all).
Live = list[tuple[Tunnel, TunnelSnapshot]]

# In the panel's own HTML, so it looks right in JupyterLab's light and dark
# themes alike; scoped to .nbt-panel so nothing else on the page changes.
STYLE = """<style>
.nbt-panel {
  border: 1px solid var(--jp-border-color2, #e0e0e0);
  border-radius: 4px;
  background: var(--jp-layout-color1, white);
  color: var(--jp-ui-font-color1, rgba(0, 0, 0, 0.87));
  font-family: var(--jp-ui-font-family, sans-serif);
  font-size: var(--jp-ui-font-size1, 13px);
  padding: 4px 10px 8px 10px;
}
.nbt-panel .widget-html-content {
  color: var(--jp-ui-font-color1, rgba(0, 0, 0, 0.87));
  font-size: var(--jp-ui-font-size1, 13px);
}
.nbt-panel .nbt-what .widget-html-content,
.nbt-panel .nbt-error .widget-html-content,
.nbt-panel .nbt-add-error .widget-html-content {
  line-height: 1.4; white-space: normal; align-self: center;
}
.nbt-panel .nbt-title .widget-html-content { font-weight: 600; }
.nbt-panel .nbt-muted, .nbt-panel .nbt-summary .widget-html-content,
.nbt-panel .nbt-conns .widget-html-content {
  color: var(--jp-ui-font-color2, #616161);
}
.nbt-panel .nbt-row { border-top: 1px solid var(--jp-border-color2, #e0e0e0); }
.nbt-panel .nbt-line { align-items: center; }
.nbt-panel .nbt-traffic .widget-html-content {
  font-family: var(--jp-code-font-family, monospace);
  font-size: var(--jp-code-font-size, 13px);
}
.nbt-panel .nbt-error .widget-html-content,
.nbt-panel .nbt-add-error .widget-html-content {
  color: var(--jp-error-color1, #c62828);
}
.nbt-panel .nbt-link { color: var(--jp-content-link-color, #1976d2); }
.nbt-panel .nbt-note { font-size: var(--jp-ui-font-size0, 11px); }
.nbt-panel .nbt-new input { font-family: var(--jp-code-font-family, monospace); }
</style>"""

PLACEHOLDER = "-L 0:localhost:8888 user@host   (or just -L 0:localhost:8888)"


def _set(widget: Any, name: str, value: Any) -> None:
    """Set a trait only if it changed (traitlets would not notify anyway; this says so)."""
    if getattr(widget, name) != value:
        setattr(widget, name, value)


def _error_html(text: str) -> str:
    if not text:
        return ""
    # pre-wrap: a SpecError's list of accepted forms is one per line.
    return (
        "<span class='nbt-error-text' style='white-space:pre-wrap'>"
        f"{html.escape(text, quote=False)}</span>"
    )


class _Row:
    """The widgets of one forward's row."""

    def __init__(self, panel: Panel, handle: Forward) -> None:
        self.handle = handle
        self.failure = ""  # why the last click on this row did not work
        self.state: State | None = None
        self.toggle = w.ToggleButton(
            value=False, description="off", layout=w.Layout(width="4.5em")
        )
        self.light = w.HTML(layout=w.Layout(width="8.5em", flex="0 0 auto"))
        self.what = w.HTML(layout=w.Layout(flex="1 1 auto", min_width="16em"))
        self.conns = w.HTML(layout=w.Layout(width="9em", flex="0 0 auto"))
        self.traffic = w.HTML(layout=w.Layout(width="19em", flex="0 0 auto"))
        self.remove = w.Button(
            description="remove",
            tooltip="stop this forward and remove its row",
            layout=w.Layout(width="6em", flex="0 0 auto"),
        )
        self.error = w.HTML(layout=w.Layout(display="none", margin="0 0 0 5em"))
        for widget, name in (
            (self.toggle, "nbt-toggle"),
            (self.light, "nbt-light"),
            (self.what, "nbt-what"),
            (self.conns, "nbt-conns"),
            (self.traffic, "nbt-traffic"),
            (self.remove, "nbt-remove"),
            (self.error, "nbt-error"),
        ):
            widget.add_class(name)
        line = w.HBox(
            [self.toggle, self.light, self.what, self.conns, self.traffic, self.remove]
        )
        line.add_class("nbt-line")
        self.box = w.VBox([line, self.error])
        self.box.add_class("nbt-row")
        self._line = line
        self.toggle.observe(lambda change: panel._toggled(self, change), "value")
        self.remove.on_click(lambda _: panel._remove(self))

    def show(self, row: view.Row) -> None:
        _set(self.toggle, "value", row.on)
        _set(self.toggle, "description", "on" if row.on else "off")
        _set(self.toggle, "button_style", "success" if row.on else "")
        _set(
            self.toggle,
            "tooltip",
            "stop this forward" if row.on else "start this forward again",
        )
        _set(self.light, "value", row.light)
        _set(self.what, "value", row.what)
        _set(self.conns, "value", row.connections)
        _set(self.traffic, "value", row.traffic)
        error = self.failure or row.error
        _set(self.error, "value", _error_html(error))
        _set(self.error.layout, "display", "flex" if error else "none")
        if self.state != row.state:
            # For a page's tests and styles: the row says its state.
            if self.state is not None:
                self.box.remove_class(f"nbt-state-{self.state}")
            self.box.add_class(f"nbt-state-{row.state}")
            self.state = row.state

    def close(self) -> None:
        for widget in (
            self.toggle,
            self.light,
            self.what,
            self.conns,
            self.traffic,
            self.remove,
            self.error,
            self._line,
            self.box,
        ):
            widget.close()


class Panel:
    """Every forward of a manager, live: toggle, state, traffic, remove, and an add box.

    Display it (it is the last expression of a cell, or ``display(panel)``);
    ``panel.widget`` is the ipywidgets box, to put inside a layout of your
    own.  ``close()`` removes it and lets the ticker go.
    """

    def __init__(self, manager: Manager) -> None:
        self._manager = manager
        self._lock = threading.RLock()
        # True while the panel sets its own widgets: a toggle's value then
        # changes without anyone clicking it.
        self._applying = False
        self._closed = False
        self._rates = view.Rates()
        self._rows: dict[view.Key, _Row] = {}
        self._live_ids: list[tuple[int, str]] = []

        self._title = w.HTML(STYLE + "<span>SSH tunnels</span>")
        self._title.add_class("nbt-title")
        self._summary = w.HTML(layout=w.Layout(margin="0 0 0 1em"))
        self._summary.add_class("nbt-summary")
        self._status = w.HTML()
        self._status.add_class("nbt-add-error")
        self._rows_box = w.VBox([])
        self._rows_box.add_class("nbt-rows")
        self._target = w.Dropdown(
            options=[],
            description="add to",
            layout=w.Layout(display="none", width="16em"),
            style={"description_width": "3.5em"},
        )
        self._target.add_class("nbt-target")
        self._entry = w.Text(
            placeholder=PLACEHOLDER, layout=w.Layout(flex="1 1 auto", width="auto")
        )
        self._entry.add_class("nbt-new")
        self._add = w.Button(
            description="add",
            tooltip="open this forward",
            layout=w.Layout(width="6em"),
        )
        self._add.add_class("nbt-add")
        self._add.on_click(lambda _: self._add_clicked())
        self._add_error = w.HTML(layout=w.Layout(display="none"))
        self._add_error.add_class("nbt-add-error")
        head = w.HBox([self._title, self._summary])
        entry = w.HBox([self._target, self._entry, self._add])
        entry.add_class("nbt-entry")
        self._chrome = [head, entry]
        self.widget = w.VBox(
            [head, self._rows_box, entry, self._add_error, self._status]
        )
        self.widget.add_class("nbt-panel")
        self.refresh()
        TICKER.add(self)

    # -- what the ticker calls ---------------------------------------------

    @property
    def manager(self) -> Manager:
        return self._manager

    @property
    def alive(self) -> bool:
        """Whether it is still worth refreshing: not closed, its manager open."""
        return not self._closed and not self._manager.closed

    def refresh(self) -> None:
        """Bring it up to date now (the ticker does so about once a second)."""
        self._apply(fetch(self._manager), time.monotonic())

    def _apply(self, live: Live | str, now: float) -> None:
        with self._lock:
            if self._closed:
                return
            self._applying = True
            try:
                if isinstance(live, str):  # the engine could not be asked
                    _set(self._status, "value", _error_html(live))
                    return
                _set(self._status, "value", "")
                self._show(live, now)
            finally:
                self._applying = False

    def _show(self, live: Live, now: float) -> None:
        snaps = [snap for _, snap in live]
        handles = {(t.id, f.index): f for t, _ in live for f in t.forwards}
        self._follow_restarts(handles)
        children, shown = [], set()
        for row in view.rows(snaps, self._rates, now):
            handle = handles.get(row.key)
            if handle is None:
                continue  # an add still in flight: its handle comes next time
            widgets = self._rows.get(row.key)
            if widgets is None:
                widgets = self._rows[row.key] = _Row(self, handle)
            widgets.show(row)
            children.append(widgets.box)
            shown.add(row.key)
        for key in set(self._rows) - shown:
            self._rows.pop(key).close()
        if tuple(children) != tuple(self._rows_box.children):
            self._rows_box.children = tuple(children)
        _set(self._summary, "value", html.escape(view.summary(snaps)))
        self._show_targets([t for t, snap in live if snap.state == "up"])

    def _follow_restarts(self, handles: dict[view.Key, Forward]) -> None:
        """A restarted forward keeps its row (re-keyed to the new forward)."""
        for key, widgets in list(self._rows.items()):
            latest = widgets.handle.current
            new_key = (latest.tunnel.id, latest.index)
            if new_key != key and new_key in handles and new_key not in self._rows:
                widgets.handle = latest
                self._rows[new_key] = self._rows.pop(key)

    def _show_targets(self, tunnels: list[Tunnel]) -> None:
        options = [(f"{t.name} ({t.destination})", t.id) for t in tunnels]
        self._live_ids = [(t.id, t.name) for t in tunnels]
        if tuple(options) != tuple(self._target.options):
            chosen = self._target.value
            self._target.options = options
            ids = [i for _, i in options]
            if chosen in ids:
                _set(self._target, "value", chosen)
        _set(self._target.layout, "display", "flex" if len(options) > 1 else "none")

    # -- what the buttons do -------------------------------------------------

    def _clicked(self) -> bool:
        """Whether the change now being handled came from the page, not from us."""
        with self._lock:
            return not self._applying and not self._closed

    def _toggled(self, widgets: _Row, change: dict[str, Any]) -> None:
        if not self._clicked():
            return
        forward = widgets.handle.current
        if change["new"]:
            widgets.failure = _attempt(lambda: self._manager.restart_forward(forward))
        else:
            widgets.failure = _attempt(forward.stop)
        TICKER.poke()

    def _remove(self, widgets: _Row) -> None:
        if not self._clicked():
            return
        widgets.failure = _attempt(lambda: self._manager.remove_forward(widgets.handle))
        TICKER.poke()

    def _add_clicked(self) -> None:
        if not self._clicked():
            return
        text = self._entry.value
        failure = _attempt(lambda: self._open(text))
        _set(self._add_error, "value", _error_html(failure))
        _set(self._add_error.layout, "display", "flex" if failure else "none")
        if not failure:
            _set(self._entry, "value", "")
        TICKER.poke()

    def _open(self, text: str) -> None:
        wanted = view.read_new(text)
        if isinstance(wanted, tuple):
            chosen = view.pick_tunnel(self._live_ids, self._target.value)
            tunnel = next((t for t in self._manager.tunnels() if t.id == chosen), None)
            if tunnel is None:
                raise TunnelError("that tunnel has stopped; choose another")
            self._manager.add(tunnel, wanted)
        else:
            self._manager.open(wanted.text)

    # -- its life --------------------------------------------------------------

    def close(self) -> None:
        """Remove it from the page and stop refreshing it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for widgets in self._rows.values():
                widgets.close()
            self._rows.clear()
            for widget in (
                self._title,
                self._summary,
                self._status,
                self._rows_box,
                self._target,
                self._entry,
                self._add,
                self._add_error,
                *self._chrome,
                self.widget,
            ):
                widget.close()
        TICKER.poke()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        if self._closed:
            return {"text/plain": "<closed nbtunnel panel>"}
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        rows = len(self._rows)
        return f"<nbtunnel panel: {rows} forward{'s' * (rows != 1)}>"


def _attempt(action: Callable[[], object]) -> str:
    """Do it; what went wrong, for the panel to show where it was asked, or ``""``."""
    try:
        action()
    except TunnelError as exc:
        return str(exc)
    return ""


def fetch(manager: Manager) -> Live | str:
    """Every live tunnel of the manager with a snapshot, or why the engine said no."""
    try:
        snaps = manager.snapshots()
    except TunnelError as exc:
        return f"cannot read the tunnels' state: {exc}"
    handles = {t.id: t for t in manager.tunnels()}
    return [(handles[s.id], s) for s in snaps if s.id in handles]


class Ticker:
    """The one thread that refreshes every live panel, about once a second."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._panels: weakref.WeakSet[Panel] = weakref.WeakSet()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def thread(self) -> threading.Thread | None:
        """The running thread, if any panel is alive."""
        return self._thread

    def add(self, panel: Panel) -> None:
        with self._lock:
            self._panels.add(panel)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="nbtunnel-panel-ticker", daemon=True
                )
                self._thread.start()

    def poke(self) -> None:
        """Refresh now rather than at the next tick (after a click)."""
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(TICK_SECONDS)
            self._wake.clear()
            if not self._tick():
                return

    def _tick(self) -> bool:
        """Refresh every live panel; False (and the thread is done) when none is left.

        Panels are strong references only for the length of one tick.
        """
        with self._lock:
            panels = [p for p in self._panels if p.alive]
            if not panels:
                self._thread = None
                return False
        groups: dict[int, list[Panel]] = {}
        for panel in panels:
            groups.setdefault(id(panel.manager), []).append(panel)
        for group in groups.values():
            # One broken panel (or manager) must not stop the others' updates.
            try:
                live = fetch(group[0].manager)
            except Exception:
                logger.exception("nbtunnel panel: reading the tunnels failed")
                continue
            now = time.monotonic()
            for panel in group:
                try:
                    panel._apply(live, now)
                except Exception:
                    logger.exception("nbtunnel panel refresh failed")
        return True


TICKER = Ticker()
