"""The widget panel (``nbtunnel.panel()``, ``%tunnel panel``): a live view of a manager.

A panel holds no tunnel state of its own.  What it shows comes from the
manager's handles and snapshots, and what its buttons do goes to the
manager (``Forward.stop``, ``Manager.restart_forward``,
``Manager.remove_forward``, ``Manager.open``/``add``), so ``%tunnel``'s
table and every other panel show the same.  The ticker (``ticker``)
keeps it up to date; each forward's row is a :class:`RowWidgets` (``row``).
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from typing import Any

from ...client import browser
from ...client.handles import Forward, Tunnel
from ...client.manager import Manager
from ...errors import MissingDependencyError, TunnelError

try:
    import ipywidgets as w
except ImportError as exc:
    # One line that says what to do, not a ModuleNotFoundError from deep
    # inside (%tunnel panel shows it as its one red line).
    raise MissingDependencyError(
        f"the panel needs ipywidgets, which cannot be imported ({exc}): "
        "pip install 'nbtunnel[notebook]'"
    ) from None

from . import view
from .row import RowWidgets, set_changed
from .style import STYLE, error_html
from .ticker import TICKER, Live, fetch

PLACEHOLDER = "-L 0:localhost:8888 user@host   (or just -L 0:localhost:8888)"


class Panel(w.VBox):  # type: ignore[misc]  # ipywidgets has no types
    """Every forward of a manager, live: toggle, state, traffic, remove, and an add box.

    An ipywidgets ``VBox``: display it (the last expression of a cell, or
    ``display(panel)``), or put it in a layout of your own (a ``VBox``, an
    ``AppLayout``, a Voilà dashboard); ``kwargs`` go to the ``VBox``
    (``layout=...``).  ``close()`` removes it and lets the ticker go.
    Its state is plain attributes beside the box's traits; only
    ``children`` and the CSS class are the box's own.
    """

    # Until __init__ has made all of it (Widget.__del__ closes even a panel
    # whose making failed half-way).
    _closed = True

    def __init__(self, manager: Manager, **kwargs: Any) -> None:
        self._lock = threading.RLock()
        self._manager = manager
        # True while the panel sets its own widgets: a toggle's value then
        # changes without anyone clicking it.
        self._applying = False
        self._rates = view.Rates()
        self._rows: dict[view.Key, RowWidgets] = {}
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
        super().__init__(
            [head, self._rows_box, entry, self._add_error, self._status], **kwargs
        )
        self.add_class("nbt-panel")
        self._closed = False
        try:
            self.refresh()
        except BaseException:
            # Its widgets' callbacks hold it: nothing would ever close them.
            self.close()
            raise
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
        self.apply(fetch(self._manager), time.monotonic())

    def apply(self, live: Live | str, now: float) -> None:
        """Show ``live`` (what :func:`ticker.fetch` got: the tunnels with a
        snapshot each, or why the engine could not be asked) as of ``now``."""
        with self._lock:
            if self._closed:
                return
            self._applying = True
            try:
                if isinstance(live, str):  # the engine could not be asked
                    set_changed(self._status, "value", error_html(live))
                    return
                set_changed(self._status, "value", "")
                self._show(live, now)
            finally:
                self._applying = False

    def _show(self, live: Live, now: float) -> None:
        snaps = [snap for _, snap in live]
        handles = {(t.id, f.index): f for t, _ in live for f in t.forwards}
        self._follow_restarts(handles)
        children, shown = [], set()
        # Found once per process; the first time asks the Jupyter server.
        for row in view.rows(snaps, self._rates, now, browser.route()):
            handle = handles.get(row.key)
            if handle is None:
                continue  # an add still in flight: its handle comes next time
            widgets = self._rows.get(row.key)
            if widgets is None:
                widgets = self._rows[row.key] = RowWidgets(
                    handle, self._toggled, self._remove
                )
            widgets.show(row)
            children.append(widgets.box)
            shown.add(row.key)
        for key in set(self._rows) - shown:
            self._rows.pop(key).close()
        if tuple(children) != tuple(self._rows_box.children):
            self._rows_box.children = tuple(children)
        set_changed(self._summary, "value", html.escape(view.summary(snaps)))
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
                set_changed(self._target, "value", chosen)
        set_changed(
            self._target.layout, "display", "flex" if len(options) > 1 else "none"
        )

    # -- what the buttons do -------------------------------------------------

    def _clicked(self) -> bool:
        """Whether the change now being handled came from the page, not from us."""
        with self._lock:
            return not self._applying and not self._closed

    def _toggled(self, widgets: RowWidgets, change: dict[str, Any]) -> None:
        if not self._clicked():
            return
        forward = widgets.handle.current
        if change["new"]:
            widgets.failure = _attempt(lambda: self._manager.restart_forward(forward))
        else:
            widgets.failure = _attempt(forward.stop)
        TICKER.poke()

    def _remove(self, widgets: RowWidgets) -> None:
        if not self._clicked():
            return
        widgets.failure = _attempt(lambda: self._manager.remove_forward(widgets.handle))
        TICKER.poke()

    def _add_clicked(self) -> None:
        if not self._clicked():
            return
        text = self._entry.value
        failure = _attempt(lambda: self._open(text))
        set_changed(self._add_error, "value", error_html(failure))
        set_changed(self._add_error.layout, "display", "flex" if failure else "none")
        if not failure:
            set_changed(self._entry, "value", "")
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
        """Remove it from the page and stop refreshing it (``Widget.close_all()``
        and the garbage collector call this too)."""
        with self._lock:
            if self._closed:  # already, or never wholly made
                super().close()
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
            ):
                widget.close()
            super().close()
        TICKER.poke()

    def __repr__(self) -> str:
        if self._closed:
            return "<closed nbtunnel panel>"
        rows = len(self._rows)
        return f"<nbtunnel panel: {rows} forward{'s' * (rows != 1)}>"


def _attempt(action: Callable[[], object]) -> str:
    """Do it; what went wrong, for the panel to show where it was asked, or ``""``."""
    try:
        action()
    except TunnelError as exc:
        return str(exc)
    return ""
