"""``%tunnel``: the ssh command line in a notebook cell (``%load_ext nbtunnel``).

A view over the process's default manager: it parses, asks the manager, and
displays.  A TunnelError becomes IPython's UsageError, which a notebook shows
as one red line without a traceback (a subclass would not do: ipython#14024);
``-v`` shows the whole exception instead.
"""

from __future__ import annotations

import getpass
import shlex
from dataclasses import replace
from typing import Any

from IPython.core.error import StdinNotImplementedError, UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, line_magic, magics_class

from ..client import display
from ..client.manager import Manager, Tunnel, close_default, default_manager
from ..errors import SpecError, TunnelError
from ..grammar.spec import ForwardSpec, TunnelSpec, parse, parse_forward
from ..settings.resolve import Prompt
from ..status import ForwardSnapshot, TunnelSnapshot

USAGE = """\
%tunnel [--name NAME] [ssh options] (-L spec | -R spec | -D spec)... destination
%tunnel [list]              the table of every tunnel and forward
%tunnel stop NAME|all       stop one tunnel, or all of them
%tunnel -KL [bind:]port     cancel one forward (also -KR, -KD), as ssh's ~C does
%tunnel panel               a live panel of every forward: toggle, remove, add

Running the same line again returns the tunnel already up.  A destination
that is a live tunnel's name, or the same destination with the same options,
adds the forwards to that tunnel's SSH connection."""

_CANCEL = {"-KL": "local", "-KR": "remote", "-KD": "dynamic"}


class TunnelTable:
    """Every tunnel of the kernel, displayed as one table (HTML in a notebook)."""

    def __init__(self, manager: Manager) -> None:
        self._manager = manager

    def _repr_html_(self) -> str:
        return display.html_table(self._manager.snapshots())

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(display.text_table(self._manager.snapshots()))

    def __repr__(self) -> str:
        return display.text_table(self._manager.snapshots())


@magics_class
class TunnelMagics(Magics):
    @line_magic
    def tunnel(self, line: str) -> object:
        """Open, list and stop SSH forwards with ssh's own syntax. See %tunnel?."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"cannot split the line: {exc}") from None
        verbose = "-v" in words
        asker = Asker()
        try:
            return run(words, default_manager(), asker)
        except TunnelError as exc:
            if verbose:
                raise
            raise UsageError(str(exc) + asker.why_not()) from None


TunnelMagics.tunnel.__doc__ = USAGE


class Asker:
    """Asks in the notebook what ssh would ask in a terminal.

    getpass and input go through the kernel to the frontend (ipykernel
    swaps them in for the cell's thread, which is the one that asks).
    Nothing typed is printed or kept: the answer goes to the engine only.
    """

    def __init__(self) -> None:
        self.refused = False

    def __call__(self, text: str, secret: bool) -> str | None:
        try:
            return getpass.getpass(text) if secret else input(text)
        except StdinNotImplementedError:
            self.refused = True
            return None

    def why_not(self) -> str:
        if not self.refused:
            return ""
        return (
            " (nbtunnel could not ask: this frontend does not allow input; "
            "run the cell in a notebook, or pass the answer another way, e.g. "
            "-o StrictHostKeyChecking=accept-new, or a key loaded in ssh-agent)"
        )


def run(words: list[str], manager: Manager, prompt: Prompt | None = None) -> object:
    """What ``%tunnel WORDS`` does, with the manager to do it."""
    if not words or words == ["list"]:
        return TunnelTable(manager)
    if words[0] == "stop":
        _stop(words[1:], manager)
        return None
    if words[0] in _CANCEL:
        _cancel(words, manager)
        return None
    if words[0] in ("help", "-h", "--help"):
        print(USAGE)
        return None
    if words[0] == "panel":
        if len(words) != 1:
            raise SpecError("usage: %tunnel panel", text=" ".join(words))
        from .panel.widget import Panel  # ipywidgets only when a panel is asked for

        return Panel(manager)
    name, rest = _name(words)
    return _open(parse(rest), name, manager, prompt)


def _name(words: list[str]) -> tuple[str | None, list[str]]:
    if "--name" not in words:
        return None, words
    i = words.index("--name")
    if i + 1 >= len(words):
        raise SpecError("--name needs a value: --name NAME", text="--name")
    return words[i + 1], words[:i] + words[i + 2 :]


def _stop(args: list[str], manager: Manager) -> None:
    if len(args) != 1:
        raise SpecError("usage: %tunnel stop NAME|all", text=" ".join(args))
    if args[0] == "all":
        manager.stop_all()
        return
    tunnel = manager.get(args[0])
    if tunnel is None:
        raise SpecError(
            f"no tunnel named '{args[0]}' is open{_known(manager)}", text=args[0]
        )
    tunnel.stop()


def _known(manager: Manager) -> str:
    names = [t.name for t in manager.tunnels()]
    return f" (open: {', '.join(names)})" if names else " (none is open)"


# Every live tunnel with one snapshot of it: a Forward's state or stats is a
# round trip to the engine each time it is read, this is one for them all.
Live = list[tuple[Tunnel, TunnelSnapshot]]


def _live(manager: Manager) -> Live:
    handles = {t.id: t for t in manager.tunnels()}
    return [
        (handles[snap.id], snap)
        for snap in manager.snapshots()
        if snap.id in handles and snap.state == "up"
    ]


def _cancel(words: list[str], manager: Manager) -> None:
    flag, args = words[0], words[1:]
    kind = _CANCEL[flag]
    if len(args) != 1:
        raise SpecError(
            f"usage: %tunnel {flag} [bind_address:]port", text=" ".join(args)
        )
    # "[bind:]port" is a dynamic forward's grammar, whatever the kind.
    wanted = parse_forward("-D", args[0])
    for tunnel, snap in _live(manager):
        for forward in snap.forwards:
            if _matches(forward, kind, wanted.listen_host, wanted.listen_port):
                tunnel._forwards[forward.index].stop()
                return
    raise SpecError(
        f"no -{flag[-1]} forward listens on {args[0]} (see %tunnel for the list)",
        text=args[0],
    )


def _matches(
    forward: ForwardSnapshot, kind: str, host: str | None, port: int | None
) -> bool:
    if forward.kind != kind or forward.listen_port != port or forward.state != "up":
        return False
    if host is None or forward.listen_host == host:
        return True
    return host in ("*", "") and forward.listen_host in ("", "*", "0.0.0.0", "::")


def _open(
    spec: TunnelSpec, name: str | None, manager: Manager, prompt: Prompt | None
) -> Tunnel:
    live = _live(manager)
    for tunnel, _ in live:
        if tunnel.spec.text == spec.text and name in (None, tunnel.name):
            return tunnel  # the cell ran again: the tunnel is up, same ports
    for tunnel, snap in live:
        # A new name asks for a tunnel of its own (which still shares the
        # SSH connection, in the engine); an existing one adds to it.
        if name is None:
            joins = tunnel.name == spec.destination.text or _shares(tunnel.spec, spec)
        else:
            joins = tunnel.name == name and _shares(tunnel.spec, spec)
        if joins:
            return _add(tunnel, snap, spec.forwards, live, manager)
    _check_ports(spec.forwards, spec, live)
    return manager.open(spec.text, name=name, prompt=prompt)


def _shares(live: TunnelSpec, new: TunnelSpec) -> bool:
    """Same destination and the same options: one SSH connection serves both,
    as OpenSSH's ControlMaster would share it."""
    return replace(live, forwards=(), verbose=0) == replace(new, forwards=(), verbose=0)


def _add(
    tunnel: Tunnel,
    snap: TunnelSnapshot,
    forwards: tuple[ForwardSpec, ...],
    live: Live,
    manager: Manager,
) -> Tunnel:
    running = {f.spec for f in snap.forwards if f.state == "up"}
    missing = tuple(f for f in forwards if str(f) not in running)
    if missing:
        _check_ports(missing, tunnel.spec, live)
        manager.add(tunnel, missing)
    return tunnel


def _check_ports(
    forwards: tuple[ForwardSpec, ...], spec: TunnelSpec, live: Live
) -> None:
    """A fixed port another live forward holds is named, with who holds it."""
    for wanted in forwards:
        if not wanted.listen_port:
            continue
        for tunnel, snap in live:
            # -L/-D ports are on this machine; -R ports on that tunnel's server.
            if wanted.kind == "remote" and not _shares(tunnel.spec, spec):
                continue
            for held in snap.forwards:
                if (
                    (held.kind == "remote") == (wanted.kind == "remote")
                    and held.state == "up"
                    and held.listen_port == wanted.listen_port
                ):
                    raise SpecError(
                        f"port {wanted.listen_port} of '{wanted}' is held by tunnel "
                        f"'{tunnel.name}' ({held.spec}); stop that forward with "
                        f"%tunnel -K{held.spec[1]} {held.listen_port} or pick "
                        "another port (0 for any free one)",
                        text=str(wanted),
                    )


def load_ipython_extension(ip: InteractiveShell) -> None:
    ip.register_magics(TunnelMagics)
    _hook_shutdown(ip)
    # The first %tunnel then finds its engine running (the engine's start
    # was about 200 of a cold open's 250 ms, benchmarks/compare.py).
    default_manager().start_engine(background=True)


def unload_ipython_extension(ip: InteractiveShell) -> None:
    close_default()
    # IPython leaves a magic in place when its extension unloads.
    ip.magics_manager.magics["line"].pop("tunnel", None)


def _hook_shutdown(ip: InteractiveShell) -> None:
    # IPython has no shutdown event, and atexit is cut short when
    # jupyter_client follows its shutdown request with SIGTERM after about
    # 2.5 s; the kernel's do_shutdown runs first on a shutdown and a restart.
    kernel = getattr(ip, "kernel", None)
    if kernel is None or getattr(kernel, "_nbtunnel_hooked", False):
        return
    original = kernel.do_shutdown

    def do_shutdown(restart: bool) -> Any:
        close_default()
        return original(restart)

    kernel.do_shutdown = do_shutdown
    kernel._nbtunnel_hooked = True
