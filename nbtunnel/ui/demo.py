"""``nbtunnel demo``: the whole product, against an SSH server embedded in this process.

Needs no SSH server, no keys and no configuration: the embedded server
(``nbtunnel.testing``) listens on loopback with keys made for it alone, and
a small "private" web service stands for what only the server can reach.
One tunnel carries a ``-L``, a ``-R`` and a ``-D`` forward; the tour moves
data through each and checks it, prints the status table and the same
forwards as an OpenSSH command, and exits 0 (``--serve`` stays up until
Ctrl-C).
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from types import FrameType
from typing import TextIO

from ..client import display, fit
from ..client.handles import Forward, Tunnel
from ..client.manager import Manager
from ..engine.protocol import Message
from ..errors import TunnelError
from ..platform.processes import stop_signals
from ..testing import EmbeddedServer, PrivateService
from ..testing.clients import Response, get
from ..testing.services import payload_sha256
from . import demo_options, output

USAGE = """\
usage: nbtunnel demo [--serve] [--size MIB]

Runs -L, -R and -D forwards through an SSH server embedded in this process
(loopback only, its own throwaway keys; nothing in ~/.ssh is read or
written), moves data through each, and exits 0 when every check passed.

  --serve     stay up after the tour, until Ctrl-C (or SIGTERM), to try the
              forwards by hand
  --size MIB  how much to fetch through -L, checked by sha256 (default 64)
"""


class DemoFailed(Exception):
    """A check of the tour did not hold."""


class _Signalled(BaseException):
    """SIGTERM or SIGHUP: the demo stops as on Ctrl-C, cleaning up (not an
    Exception, so that nothing on the way catches it as a failure)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP end the demo as Ctrl-C does: their default ends
    the process on the spot, leaving the embedded server's directory (its
    private key included) behind."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; no signal comes there
        return
    stopping: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        if not stopping:  # a second signal must not cut the cleanup short
            stopping.append(signum)
            raise _Signalled(signum)

    previous = [(signum, signal.signal(signum, stop)) for signum in stop_signals()]
    try:
        yield
    finally:
        for signum, handler in previous:
            signal.signal(signum, handler)


class _Say:
    """Lines to the demo's output, each wrapped to the width, its
    continuation indented under it."""

    def __init__(self, out: TextIO, width: int) -> None:
        self.out = out
        self.width = width

    def __call__(self, text: str = "") -> None:
        lines = []
        for part in text.split("\n"):
            body = part.lstrip(" ")
            indent = part[: len(part) - len(body)]
            # An indented line goes on further in; a paragraph at the margin
            # stays there.
            after = indent + "  " if indent else ""
            lines += fit.wrap(body, self.width, indent, after) if body else [""]
        self.lines(lines)

    def lines(self, lines: Sequence[str]) -> None:
        """Lines fitted already (a table, a command), as they are."""
        self.out.write("".join(line + "\n" for line in lines))
        self.out.flush()


class _Progress:
    """A one-line progress bar on a terminal; a few plain lines elsewhere."""

    def __init__(self, out: TextIO, width: int) -> None:
        self.out = out
        self.tty = out.isatty()
        self.started = time.perf_counter()
        self._shown = 0
        # The bar takes what the numbers after it leave, up to 30 columns.
        self._bar = max(10, min(30, width - 36))

    def __call__(self, received: int, total: int) -> None:
        if not total:
            return
        part = received / total
        rate = received / max(time.perf_counter() - self.started, 1e-6) / 1e6
        text = (
            f"   [{'#' * int(part * self._bar):<{self._bar}}] "
            f"{received / 2**20:5.1f}/{total / 2**20:.1f} MiB  {rate:4.0f} MB/s"
        )
        if self.tty:
            self.out.write("\r" + text)
            if received >= total:
                self.out.write("\n")
        elif int(part * 4) > self._shown:  # at 25, 50, 75 and 100%
            self._shown = int(part * 4)
            self.out.write(text + "\n")
        self.out.flush()


def _check(response: Response, expect_status: int, expect_text: bytes) -> str:
    if response.status != expect_status or expect_text not in response.head:
        raise DemoFailed(
            f"expected {expect_status} with {expect_text.decode()!r}, got "
            f"{response.status} {response.head[:80]!r}"
        )
    title = response.head.split(b"<h1>", 1)[-1].split(b"</h1>", 1)[0]
    return f"{response.status} {title.decode()!r}"


def _tour(say: _Say, tunnel: Tunnel, service: PrivateService, mib: int) -> int:
    """Move data through each forward and check it; returns the bytes checked."""
    local, remote, dynamic = tunnel.forwards
    checked = 0

    say("\n1. -L: a service only the server reaches, on a port of this machine")
    say(f"   {_where(local)}")
    page = get("127.0.0.1", _port(local), "/")
    say(
        f"   GET http://127.0.0.1:{local.listen_port}/ -> {_check(page, 200, b'Hello')}",
    )
    # In a notebook on a hub, the browser is elsewhere: the URL through the
    # Jupyter server's proxy (the same as curl's here, outside one).
    say(f"   open it in your browser: {local.browser_url()}")
    size = mib * 2**20
    say(f"   GET /bytes/{size} ({mib} MiB), checked by sha256:")
    started = time.perf_counter()
    bulk = get(
        "127.0.0.1",
        _port(local),
        f"/bytes/{size}",
        progress=_Progress(say.out, say.width),
    )
    seconds = time.perf_counter() - started
    if bulk.size != size or bulk.sha256 != payload_sha256(size):
        raise DemoFailed(
            f"the {mib} MiB through -L arrived as {bulk.size} bytes with another sha256"
        )
    checked += page.size + bulk.size
    say(f"   {bulk.size} bytes in {seconds:.2f} s, sha256 matches")

    say("\n2. -R: a dashboard running here, shown to people on the server")
    say(f"   {_where(remote)}")
    say(f"   on the server, someone opens http://127.0.0.1:{remote.listen_port}/")
    shown = get("127.0.0.1", _port(remote), "/")
    say(f"   -> {_check(shown, 200, b'your dashboard')}")
    checked += shown.size

    say("\n3. -D: a SOCKS proxy to everything the server reaches")
    say(f"   {_where(dynamic)}")
    via = ("127.0.0.1", _port(dynamic))
    proxied = get("localhost", service.port, "/", socks=via)
    say(
        f"   GET http://localhost:{service.port}/ through socks5h://127.0.0.1:"
        f"{dynamic.listen_port} (the server resolves 'localhost') -> "
        f"{_check(proxied, 200, b'Hello')}",
    )
    checked += proxied.size
    return checked


def _as_openssh(forward: Forward) -> tuple[str, str]:
    spec = forward.spec
    if spec.kind != "remote" and spec.listen_port == 0:
        spec = replace(spec, listen_port=forward.listen_port)
    return spec.flag, spec.text


def _port(forward: Forward) -> int:
    if forward.listen_port is None:
        raise DemoFailed(f"{forward!r} has no port")
    return forward.listen_port


def _where(forward: Forward) -> str:
    return display.forward_line(forward.snapshot(), forward.tunnel.destination)


def _serve(
    say: _Say, manager: Manager, tunnel: Tunnel, service: PrivateService
) -> bool:
    """Up until Ctrl-C, SIGTERM or SIGHUP; returns whether the output's
    reader went away meanwhile (``nbtunnel demo --serve | head``)."""
    local, remote, dynamic = tunnel.forwards
    stop = threading.Event()
    lines = output.Lines(say.out, on_gone=stop.set)

    def on_event(message: Message) -> None:
        line = display.event_line(message)
        if line:
            text = f"{time.strftime('%H:%M:%S')} {line}"
            lines.write(*fit.wrap(text, say.width, "   ", "     "))

    manager.subscribe(on_event)
    tries = [
        ["curl", f"http://127.0.0.1:{local.listen_port}/"],
        [
            "curl",
            "--socks5-hostname",
            f"127.0.0.1:{dynamic.listen_port}",
            f"http://localhost:{service.port}/",
        ],
    ]
    # From its first line on, a signal ends the serving, not the demo.
    with contextlib.suppress(KeyboardInterrupt, _Signalled):
        say("\nserving until Ctrl-C; try:")
        for words in tries:
            say.lines(fit.command(words, say.width, "   "))
        say(
            f"   curl http://127.0.0.1:{remote.listen_port}/   (the server's end of -R)"
        )
        while not stop.wait(3600):
            pass
    return lines.gone


def run(argv: Sequence[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run the demo; returns the exit status."""
    try:
        options = demo_options.parse(argv)
    except demo_options.DemoArgumentError as exc:
        err.write(f"nbtunnel demo: {exc}\n")
        return 2
    if options.help:
        out.write(USAGE)
        return 0
    serve, mib = options.serve, options.mib
    with _stopped_by_signals():
        try:
            return _demo(_Say(out, output.width()), err, serve, mib)
        except (KeyboardInterrupt, _Signalled) as exc:
            signum = exc.signum if isinstance(exc, _Signalled) else signal.SIGINT
            name = signal.Signals(signum).name
            err.write(f"nbtunnel demo: stopped by {name}; everything is cleaned up\n")
            return 128 + signum


def _demo(say: _Say, err: TextIO, serve: bool, mib: int) -> int:
    started = time.perf_counter()
    manager = Manager()
    gone = False
    try:
        with (
            EmbeddedServer() as server,
            PrivateService() as service,
            PrivateService(
                "your dashboard", "Served from this machine, shown on the server by -R."
            ) as dashboard,
        ):
            say(
                "nbtunnel demo: -L, -R and -D through an SSH server embedded in this "
                f"process ({server.host} port {server.port}: loopback only, keys made "
                "for it alone; ~/.ssh is not touched)",
            )
            forwards = [
                ("-L", f"0:localhost:{service.port}"),
                ("-R", f"0:127.0.0.1:{dashboard.port}"),
                ("-D", "0"),
            ]
            words = [w for pair in forwards for w in pair]
            server_words = shlex.join([*server.options(), server.destination])
            say()
            say.lines(fit.python_string("server = ", server_words, "", say.width))
            opening = shlex.join(words) + " "
            line = fit.python_string(
                "t = nbtunnel.open(", opening, " + server)", say.width
            )
            say.lines(line)
            opened = time.perf_counter()
            tunnel = manager.open(server.line(*words), name="demo")
            say(f"   up in {(time.perf_counter() - opened) * 1000:.0f} ms")
            checked = _tour(say, tunnel, service, mib)

            say()
            say.lines(
                display.text_table(manager.snapshots(), width=say.width).split("\n")
            )
            say(
                "\nthe same with OpenSSH's client, one forward each (ssh takes no "
                "port 0 for -L and -D: these are the ports nbtunnel bound):",
            )
            for forward in tunnel.forwards:
                command = shlex.split(server.ssh_command(*_as_openssh(forward)))
                say.lines(fit.command(command, say.width, "   "))
            if serve:
                gone = _serve(say, manager, tunnel, service)
            tunnel.stop()
            if tunnel.state != "stopped":
                raise DemoFailed(f"the tunnel ended {tunnel.state}, not stopped")
    except BrokenPipeError:
        raise  # the reader is gone: the command ends quietly (output.py)
    except (DemoFailed, TunnelError, OSError) as exc:
        err.write(f"nbtunnel demo: FAILED: {exc}\n")
        return 1
    finally:
        manager.close()
    if gone:
        return output.BROKEN_PIPE_STATUS
    say(
        f"\ndone in {time.perf_counter() - started:.1f} s: {checked} bytes checked "
        "through -L, -R and -D; every forward, the connection and the server stopped",
    )
    return 0
