"""``%tunnel``: the ssh command line in a notebook cell (``%load_ext nbtunnel``).

A view over the process's default manager: it parses, asks the manager, and
displays.  A TunnelError becomes IPython's UsageError, which a notebook shows
as one red line without a traceback (a subclass would not do: ipython#14024),
``-v`` or not.  With ``-v`` the cell shows the tunnel's steps as it opens,
``debug1: ...`` lines as ssh prints them.
"""

from __future__ import annotations

import contextvars
import getpass
import shlex
import sys
import threading
from collections.abc import Callable
from typing import Any

from IPython.core.error import StdinNotImplementedError, UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, line_magic, magics_class

from ..client import browser, display
from ..client.manager import Manager, close_default, default_manager
from ..errors import SpecError, TunnelError
from ..grammar import flags
from ..grammar.suggest import did_you_mean, mistyped_command, mistyped_long_flag
from ..settings.resolve import Prompt
from . import completion, help

_LINES = """\
%tunnel [--name NAME] [ssh options] (-L spec | -R spec | -D spec)... destination
%tunnel [list]              the table of every tunnel and forward
%tunnel stop NAME|all       stop one tunnel, or all of them
%tunnel -KL [bind:]port     cancel one forward (also -KR, -KD), as ssh's ~C does
%tunnel panel               a live panel of every forward: toggle, remove, add
%tunnel -V                  the version of nbtunnel and of what it runs on
%tunnel help, %tunnel?      this help

Running the same line again returns the tunnel already up.  A destination
that is a live tunnel's name, or the same destination with the same options,
adds the forwards to that tunnel's SSH connection."""

_EXAMPLES = """\
examples (IPython expands {expression} and $name in the line):
  t = %tunnel -J you@bastion.example.com -L 0:localhost:5432 you@db.internal
  t.forwards[0].url("postgresql://you@localhost:5432/sales")  # the port bound
  %tunnel -R 8080:localhost:8050 you@shared.example.com  # a dashboard, shared
  t = %tunnel -D 0 you@gateway.example.com  # a SOCKS proxy, and for requests:
  t.forwards[-1].proxies

try it here, with no server, keys or configuration: an SSH server in this
kernel (loopback only, keys made for it alone) and a page only it reaches:
  from nbtunnel.testing import EmbeddedServer, PrivateService
  server, service = EmbeddedServer().start(), PrivateService()
  SSH = server.line()
  t = %tunnel -L 0:localhost:{service.port} $SSH
  t.forwards[0].browser_url()         # the page, through the forward
  %tunnel stop all
  server.stop(); service.stop()
In a terminal, `nbtunnel demo` tours -L, -R and -D the same way."""

USAGE = help.magic(_LINES, _EXAMPLES)
# The grammar's synopsis, as errors show it, with the magic's name.
_SYNOPSIS = (flags.USAGE, flags.usage("%tunnel"))

_CANCEL = ("-KL", "-KR", "-KD")
# The commands, each with its usage (a word they do not take says it).
_COMMANDS = {
    "list": "%tunnel [list]",
    "stop": "%tunnel stop NAME|all",
    "panel": "%tunnel panel",
    "help": "%tunnel help",
}
_LONG_FLAGS = ("--name", "--help", "--no-reconnect")


class TunnelTable:
    """Every tunnel of the kernel, displayed as one table (HTML in a notebook)."""

    def __init__(self, manager: Manager) -> None:
        self._manager = manager

    def _repr_html_(self) -> str:
        return display.html_table(self._manager.snapshots(), browser.route())

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(display.text_table(self._manager.snapshots(), browser.route()))

    def __repr__(self) -> str:
        return display.text_table(self._manager.snapshots(), browser.route())


@magics_class
class TunnelMagics(Magics):
    @line_magic
    def tunnel(self, line: str) -> object:
        """Open, list and stop SSH forwards with ssh's own syntax. See %tunnel?."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"cannot split the line: {exc}") from None
        asker = Asker()
        try:
            return run(words, default_manager(), asker, _cell_lines())
        except TunnelError as exc:
            message = str(exc).replace(*_SYNOPSIS)
            raise UsageError(message + asker.why_not()) from None


def _cell_lines() -> Callable[[str], None]:
    """Writes a -v line into this cell's output.  Called from the engine's
    event thread while the cell waits for its open.  ipykernel files what a
    thread writes under the parent message its context holds, and a thread
    started before the cell holds none (ipykernel 6 then sent the lines to
    no cell at all): each line is written in a copy of the cell's context."""
    stream = sys.stdout
    cell = contextvars.copy_context()
    one_at_a_time = threading.Lock()  # a context is entered by one thread at once

    def show(line: str) -> None:
        with one_at_a_time:
            cell.run(stream.write, line + "\n")

    return show


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


def run(
    words: list[str],
    manager: Manager,
    prompt: Prompt | None = None,
    show: Callable[[str], None] | None = None,
) -> object:
    """What ``%tunnel WORDS`` does, with the manager to do it (``show`` gets
    the -v lines of an open)."""
    if not words or words == ["list"]:
        return TunnelTable(manager)
    if words[0] == "stop":
        _stop(words[1:], manager)
        return None
    if words[0] in _CANCEL:
        _cancel(words, manager)
        return None
    # -h and -V anywhere among the flags, as the command takes them.
    if words[0] == "help" or help.asks_help(words, with_value=("--name",)):
        print(USAGE)
        return None
    if words[0] == "--version" or help.asks_version(words, with_value=("--name",)):
        print(help.version())
        return None
    if words[0] == "panel":
        if len(words) != 1:
            raise SpecError(f"usage: {_COMMANDS['panel']}", text=" ".join(words))
        from .panel.widget import Panel  # ipywidgets only when a panel is asked for

        return Panel(manager)
    name, rest = _name(words)
    try:
        return manager.open(rest, name=name, prompt=prompt, show=show)
    except SpecError as exc:
        raise _typo(words) or exc from None


def _typo(words: list[str]) -> SpecError | None:
    """What a line that failed as an ssh line may have meant instead."""
    flag = mistyped_long_flag(words, _LONG_FLAGS, with_value=("--name",))
    return flag or mistyped_command(words, _COMMANDS, "%tunnel")


def _name(words: list[str]) -> tuple[str | None, list[str]]:
    if "--name" not in words:
        return None, words
    i = words.index("--name")
    if i + 1 >= len(words):
        raise SpecError("--name needs a value: --name NAME", text="--name")
    return words[i + 1], words[:i] + words[i + 2 :]


def _stop(args: list[str], manager: Manager) -> None:
    if len(args) != 1:
        raise SpecError(f"usage: {_COMMANDS['stop']}", text=" ".join(args))
    if args[0] == "all":
        manager.stop_all()
        return
    tunnel = manager.get(args[0])
    if tunnel is None:
        raise SpecError(
            f"no tunnel named '{args[0]}' is open{_known(manager, args[0])}",
            text=args[0],
        )
    tunnel.stop()


def _known(manager: Manager, asked: str) -> str:
    names = [t.name for t in manager.tunnels()]
    if not names:
        return " (none is open)"
    guess = did_you_mean(asked, names, fold_case=False)
    return f"; {guess}" if guess else f" (open: {', '.join(names)})"


def _cancel(words: list[str], manager: Manager) -> None:
    flag, args = words[0], words[1:]
    if len(args) != 1:
        # -L and -R forwards may listen on a unix socket: named by its path.
        path = "" if flag == "-KD" else " (or its socket's path)"
        usage = f"usage: %tunnel {flag} [bind_address:]port{path}"
        raise SpecError(usage, text=" ".join(args))
    forward = manager.cancel(flag, args[0])
    print(display.cancelled_line(forward.snapshot(), forward.tunnel.name))


def load_ipython_extension(ip: InteractiveShell) -> None:
    ip.register_magics(TunnelMagics)
    completion.register(ip)
    _hook_shutdown(ip)
    # The first %tunnel then finds its engine running (the engine's start
    # was about 200 of a cold open's 250 ms, benchmarks/compare.py).
    default_manager().start_engine(background=True)


def unload_ipython_extension(ip: InteractiveShell) -> None:
    close_default()
    # IPython leaves a magic in place when its extension unloads.
    ip.magics_manager.magics["line"].pop("tunnel", None)
    completion.unregister(ip)


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
