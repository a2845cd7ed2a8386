"""The public API's arguments, checked where they come in.

A wrong type passed to ``nbtunnel.open`` or a :class:`Manager` method would
otherwise surface far away (``'NoneType' object is not iterable`` from the
parser, a prompt string "called" in the engine's thread): each check here
raises one TypeError naming the argument, what it accepts and what it got.
The command line itself is checked by the grammar, which every face uses.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import SpecError
from ..grammar.flags import has_control
from ..grammar.forwards import ForwardSpec
from ..settings.resolve import Prompt
from .handles import Tunnel

if TYPE_CHECKING:
    from .manager import Manager

ENGINE_MODES = ("process", "inline")


def kind(value: object) -> str:
    """What ``value`` is, for "..., not X": None, or its type's name."""
    return "None" if value is None else type(value).__name__


def name(value: object) -> str | None:
    """``name=``: None (the host's first label) or a tunnel's name."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"name must be a string (the tunnel's name), not {kind(value)}")
    if not value or has_control(value):
        # A SpecError (a ValueError too), as a bad --name in a line is.
        message = f"name must be a non-empty string without line breaks, not {value!r}"
        raise SpecError(message, text=value)
    return value


def prompt(value: object) -> Prompt | None:
    """``prompt=``: None, or a callable ``(text, secret) -> str | None``."""
    wanted = "prompt must be a callable (text, secret) -> str | None"
    if value is None:
        return None
    if not callable(value):
        raise TypeError(f"{wanted}, not {kind(value)}")
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):
        return value  # a builtin that does not say: it is tried when asked
    try:
        signature.bind("question", False)
    except TypeError:
        raise TypeError(
            f"{wanted}; {_callable_name(value)} cannot take (text, secret)"
        ) from None
    return value


def _callable_name(value: Any) -> str:
    return str(getattr(value, "__qualname__", None) or type(value).__name__)


def engine(value: object) -> str:
    """``Manager(engine=)``: "process" or "inline"."""
    wanted = "engine must be 'process' or 'inline'"
    if not isinstance(value, str):
        raise TypeError(f"{wanted}, not {kind(value)}")
    if value not in ENGINE_MODES:
        raise ValueError(f"{wanted}, not {value!r}")
    return value


def forwards(value: object) -> tuple[ForwardSpec, ...]:
    """``Manager.add(tunnel, forwards)``: ForwardSpecs, e.g. ``parse(line).forwards``."""
    wanted = (
        "forwards must be a list of ForwardSpec (e.g. nbtunnel.parse(line).forwards)"
    )
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{wanted}, not {kind(value)}")
    for item in value:
        if not isinstance(item, ForwardSpec):
            raise TypeError(f"{wanted}; one of them is {kind(item)}")
    return tuple(value)


def listen(value: object) -> str:
    """``Manager.cancel(flag, listen)``: ``[bind_address:]port`` (or a -L or
    -R socket's path), or a port number."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise TypeError(
            f"listen must be '[bind_address:]port' or a port number, not {kind(value)}"
        )
    return value


def flag(value: object) -> str:
    """``Manager.cancel(flag, listen)``: the flag is a string (its value is
    checked with the tunnels, in ``rules``)."""
    if not isinstance(value, str):
        raise TypeError(
            f"flag must be one of -L, -R, -D, -KL, -KR, -KD, not {kind(value)}"
        )
    return value


def tunnel_key(value: object) -> str:
    """``Manager.get(name)``: a tunnel's name, or its number."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise TypeError(f"name must be a tunnel's name or number, not {kind(value)}")
    return value


def tunnel(value: object, owner: object) -> Tunnel:
    """``Manager.add(tunnel, ...)``: a Tunnel that ``owner`` opened."""
    if not isinstance(value, Tunnel):
        raise TypeError(
            f"tunnel must be a Tunnel (from Manager.open), not {kind(value)}"
        )
    if value.manager is not owner:
        raise ValueError(f"tunnel {value.name} was opened by another Manager")
    return value


def manager(value: object) -> Manager | None:
    """``nbtunnel.panel(manager)``: None (the default one) or a Manager.

    Anything with the manager's ``tunnels`` and ``snapshots`` will do (the
    panel's tests give it a stand-in); a name or a line will not.
    """
    if value is None:
        return None
    if not all(callable(getattr(value, m, None)) for m in ("tunnels", "snapshots")):
        raise TypeError(
            f"manager must be a nbtunnel.Manager or None, not {kind(value)}"
        )
    return value  # type: ignore[return-value]
