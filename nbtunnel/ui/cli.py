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
from ..client import display
from ..client.events import verbose_line
from ..client.manager import Manager
from ..engine.protocol import Message
from ..errors import SpecError, TunnelError
from ..grammar.flags import ACCEPTED_FORMS
from ..grammar.suggest import mistyped_command, mistyped_long_flag
from ..platform.terminal import replace_unencodable

USAGE = """\
usage: nbtunnel [ssh options] (-L spec | -R spec | -D spec)... destination

The same command line as ssh(1); the forwards run in the foreground, one
line per event, until Ctrl-C.  For example:

  nbtunnel -L 9000:localhost:5432 analyst@db.example.com

`nbtunnel demo` tries it all against an SSH server embedded in this process.

forms:
""" + "".join(f"  {form}\n" for forms in ACCEPTED_FORMS.values() for form in forms)


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


def _is_ssh_flag(word: str) -> bool:
    return word.startswith("-") and not word.startswith("--") and word != "-h"


def run(argv: Sequence[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run the CLI; returns the exit status."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        out.write(USAGE)
        return 0 if argv else 2
    if argv[0] == "--version":
        out.write(f"nbtunnel {__version__}\n")
        return 0
    if argv[0] == "demo" and not any(_is_ssh_flag(a) for a in argv[1:]):
        # ssh has no long options, so "demo" followed by ssh flags is a host
        # called demo: `nbtunnel demo -L 8000:localhost:80` still works.
        from .demo import run as demo

        return demo(argv[1:], out, err)

    done = threading.Event()
    failed: list[str] = []
    write_lock = threading.Lock()

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
            with write_lock:
                out.write(line + "\n")
                out.flush()
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
            typo = typo or mistyped_command(argv, ("demo", "help"), "nbtunnel")
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
                out.write(f"forwarding {display.forward_line(f, tunnel.destination)}\n")
            for line in display.share_lines([snap]):
                out.write(line + "\n")
            out.write("press Ctrl-C to stop\n")
            out.flush()
            while not done.wait(3600):
                pass
    finally:
        manager.close()
        signal.signal(signal.SIGTERM, previous)
    if failed:
        err.write(f"nbtunnel: {failed[0]}\n")
        return 1
    out.write("stopped\n")
    return 0


def main() -> None:
    """Console entry point."""
    replace_unencodable(sys.stdout, sys.stderr)
    sys.exit(run(sys.argv[1:]))
