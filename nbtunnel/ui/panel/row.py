"""One forward's row of the panel: its widgets, kept in step with the view's row."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as w

from ...client.handles import Forward
from ...status import State
from . import view
from .style import error_html


def set_changed(widget: Any, name: str, value: Any) -> None:
    """Set a trait only if it changed (traitlets would not notify anyway; this says so)."""
    if getattr(widget, name) != value:
        setattr(widget, name, value)


class RowWidgets:
    """The widgets of one forward's row.

    A click goes to the panel's ``toggled(row, change)`` or ``removed(row)``.
    """

    def __init__(
        self,
        handle: Forward,
        toggled: Callable[[RowWidgets, dict[str, Any]], None],
        removed: Callable[[RowWidgets], None],
    ) -> None:
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
        self.toggle.observe(lambda change: toggled(self, change), "value")
        self.remove.on_click(lambda _: removed(self))

    def show(self, row: view.Row) -> None:
        set_changed(self.toggle, "value", row.on)
        set_changed(self.toggle, "description", "on" if row.on else "off")
        set_changed(self.toggle, "button_style", "success" if row.on else "")
        set_changed(
            self.toggle,
            "tooltip",
            "stop this forward" if row.on else "start this forward again",
        )
        set_changed(self.light, "value", row.light)
        set_changed(self.what, "value", row.what)
        set_changed(self.conns, "value", row.connections)
        set_changed(self.traffic, "value", row.traffic)
        error = self.failure or row.error
        set_changed(self.error, "value", error_html(error))
        set_changed(self.error.layout, "display", "flex" if error else "none")
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
