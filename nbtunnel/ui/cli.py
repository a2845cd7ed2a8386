"""``nbtunnel [ssh options] -L/-R/-D ... destination``: forwards in the foreground."""

from __future__ import annotations

import contextlib
import getpass
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import TextIO

from .._version import __version__
from ..client import display, fit
from ..client.events import verbose_line
from ..client.manager import Manager
from ..engine.protocol import Message
from ..errors import SpecError, TunnelError
from ..grammar.suggest import mistyped_command, mistyped_long_flag
from ..platform.terminal import replace_unencodable
from . import help, output
from .demo_options import DEMO_OPTIONS


def _ask_terminal(text: str, secret: bool) -> str | None:
    """Ask on the terminal, the question on stderr (stdout carries the event
    lines); a secret is read with echo off, by getpass, which knows how on
    every system (termios on POSIX, the console on Windows)."""
    if secret:
        try:
            return getpass.getpass(text, stream=sys.stderr)
        except EOFError:
            return None
    sys.stderr.write(text)
    sys.stderr.flush()
    line = sys.stdin.readline()
    return line.rstrip("\n") if line else None


# The event lines that scripts read, one event a line, kept whole when
# piped: ssh's own "Allocated port N for remote forward to ..." (what
# scripts already look for) and the record of each connection ("connection
# A → B", "closed A → B (...)", "connection failed: ..."), grepped in a log.
# Every other line (the forwarding lines, hints, states, warnings) is for
# people, and the -v lines go to stderr as ssh prints them, whole.
RECORDS = frozenset(
    {
        "allocated",
        "connection",
        "connection_closed",
        "connection_failed",
        "connection_refused",
    }
)

# nbtunnel's own commands, with their usage ("did you mean" for a typo).
_COMMANDS = {"demo": "nbtunnel demo [--serve] [--size MIB]", "help": "nbtunnel --help"}


def _is_demo(words: Sequence[str]) -> bool:
    """Whether ``nbtunnel demo WORDS`` is the demo, not a host called demo.

    ssh has no long options: a word of the demo's own (``--size -1``) makes
    it the demo, whatever follows, for the demo to say what is wrong; else
    ssh flags (``demo -L 8000:localhost:80``) make "demo" a host.
    """
    if any(word.split("=", 1)[0] in DEMO_OPTIONS for word in words):
        return True
    return not any(_is_ssh_flag(word) for word in words)


def _is_ssh_flag(word: str) -> bool:
    return word.startswith("-") and not word.startswith("--") and word != "-h"


def run(argv: Sequence[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run the CLI; returns the exit status."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        out.write(help.cli(output.width()))
        return 0 if argv else 2
    if argv[0] == "--version":
        out.write(f"nbtunnel {__version__}\n")
        return 0
    if argv[0] == "demo" and _is_demo(argv[1:]):
        from .demo import run as demo

        return demo(argv[1:], out, err)
    if help.asks_help(argv):  # anywhere among the flags, as -V
        out.write(help.cli(output.width()))
        return 0
    if help.asks_version(argv):
        err.write(help.version() + "\n")  # on stderr, as ssh -V
        return 0

    done = threading.Event()
    failed: list[str] = []
    # What a person reads fits the terminal, or UNKNOWN_WIDTH where there is
    # none (a pipe, a log file); only RECORDS stay whole there.
    columns = output.columns()
    width = columns or output.UNKNOWN_WIDTH
    lines = output.Lines(out, on_gone=done.set)
    write_lock = threading.Lock()  # -v lines on stderr, from the engine's threads

    opened = threading.Event()

    def on_event(message: Message) -> None:
        debug = verbose_line(message)  # -v: on stderr, as ssh prints it
        if debug is not None:
            with write_lock:
                err.write(debug + "\n")
                err.flush()
            return
        if message.get("event") == "state" and not opened.is_set():
            return  # the forwarding lines below say it better
        line = display.event_line(message)
        if line:
            whole = columns is None and message.get("event") in RECORDS
            lines.write(*fit.wrap(line, None if whole else width, "", "    "))
        if message.get("event") == "state" and message.get("state") == "failed":
            failed.append(str(message.get("error")))
            done.set()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    # The CLI is its own process already: the engine runs inline.
    manager = Manager(engine="inline")
    manager.subscribe(on_event)
    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        try:
            prompt = _ask_terminal if sys.stdin.isatty() else None
            tunnel = manager.open(list(argv), prompt=prompt)
        except SpecError as exc:
            # Failed as an ssh line: "--hepl" or "dmeo" may mean ours.
            typo = mistyped_long_flag(argv, ("--help", "--version", "--no-reconnect"))
            typo = typo or mistyped_command(argv, _COMMANDS, "nbtunnel")
            err.write(f"nbtunnel: {typo or exc}\n")
            return 2
        except TunnelError as exc:
            err.write(f"nbtunnel: {exc}\n")
            return 1
        except KeyboardInterrupt:
            err.write("nbtunnel: interrupted before the forwards were up\n")
            return 130
        # Ctrl-C from here on is the way to stop, even while these print.
        with contextlib.suppress(KeyboardInterrupt):
            opened.set()
            snap = tunnel.snapshot()
            for f in snap.forwards:
                line = f"forwarding {display.forward_line(f, tunnel.destination)}"
                lines.write(*fit.wrap(line, width, "", "    "))
            lines.write(*display.share_lines([snap], width), "press Ctrl-C to stop")
            while not done.wait(3600):
                pass
    finally:
        manager.close()
        signal.signal(signal.SIGTERM, previous)
    if lines.gone:
        return output.BROKEN_PIPE_STATUS  # nobody is reading: nothing to say
    if failed:
        err.write(f"nbtunnel: {failed[0]}\n")
        return 1
    lines.write("stopped")
    return 0


def main() -> None:
    """Console entry point."""
    replace_unencodable(sys.stdout, sys.stderr)
    sys.exit(output.quiet_on_broken_pipe(lambda: run(sys.argv[1:])))
