"""nbtunnel: SSH port forwarding for Python and Jupyter, in ssh's own syntax.

Layout, top to bottom (imports point down): ``cli`` → ``manager`` (the
caller's handles) → ``engine`` (a process of its own that runs every
connection and forward) → ``connection`` / ``forward`` → ``config`` /
``spec`` (the grammar).
"""

import importlib
import logging
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .client.handles import Forward, Tunnel
    from .client.manager import (
        Manager,
        default_manager,
        open,
        stop_all,
        tunnels,
    )
    from .errors import (
        AuthenticationError,
        ConnectError,
        EngineError,
        ForwardError,
        HostKeyError,
        MissingDependencyError,
        SpecError,
        TunnelError,
        UrlError,
        WorkerError,
    )
    from .grammar.destinations import Destination
    from .grammar.forwards import ForwardSpec
    from .grammar.spec import TunnelSpec, parse
    from .status import ForwardStats
    from .ui.panel.widget import Panel

# Where each public name lives, imported on first use: the engine process
# (``python -m nbtunnel.engine``) runs this file too, and the caller's side
# (the manager, display, the URL helpers) would otherwise add a tenth of a
# second to every cold start of it.
_LAZY = {
    **dict.fromkeys(
        (
            "AuthenticationError",
            "ConnectError",
            "EngineError",
            "ForwardError",
            "HostKeyError",
            "MissingDependencyError",
            "SpecError",
            "TunnelError",
            "UrlError",
            "WorkerError",
        ),
        "errors",
    ),
    **dict.fromkeys(
        (
            "Manager",
            "default_manager",
            "open",
            "stop_all",
            "tunnels",
        ),
        "client.manager",
    ),
    "Destination": "grammar.destinations",
    "ForwardSpec": "grammar.forwards",
    **dict.fromkeys(("TunnelSpec", "parse"), "grammar.spec"),
    "ForwardStats": "status",
    "Forward": "client.handles",
    "Tunnel": "client.handles",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if name == "dask":  # the submodule: nbtunnel.dask.TunnelPlugin, as written
        return importlib.import_module(".dask", __name__)
    if module is None:
        raise AttributeError(f"module 'nbtunnel' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext nbtunnel`` (or ``c.InteractiveShellApp.extensions = ["nbtunnel"]``)."""
    from .ui import magic  # IPython is imported only when a notebook asks

    magic.load_ipython_extension(ip)


def panel(manager: "Manager | None" = None) -> "Panel":
    """The widget panel: every forward of this kernel, live, with toggles and an add box.

    An ipywidgets ``VBox``, to display or to put in a layout.  Needs
    ipywidgets (``pip install 'nbtunnel[notebook]'``; without it,
    MissingDependencyError says so); several panels stay in sync, as they
    are views over the same tunnels.
    """
    from .client.arguments import manager as checked
    from .client.manager import default_manager
    from .ui.panel.widget import (
        Panel,
    )  # ipywidgets is imported only when a panel is made

    return Panel(checked(manager) or default_manager())


def unload_ipython_extension(ip: Any) -> None:
    """``%unload_ext nbtunnel``: stops every tunnel and removes ``%tunnel``."""
    from .ui import magic

    magic.unload_ipython_extension(ip)


# A library logs; the application decides what is shown (and a notebook
# cell must not fill with a background thread's messages).
logging.getLogger("nbtunnel").addHandler(logging.NullHandler())

__all__ = [
    "AuthenticationError",
    "ConnectError",
    "Destination",
    "EngineError",
    "Forward",
    "ForwardError",
    "ForwardSpec",
    "ForwardStats",
    "HostKeyError",
    "Manager",
    "MissingDependencyError",
    "SpecError",
    "Tunnel",
    "TunnelError",
    "TunnelSpec",
    "UrlError",
    "WorkerError",
    "__version__",
    "default_manager",
    "open",
    "panel",
    "parse",
    "stop_all",
    "tunnels",
]
