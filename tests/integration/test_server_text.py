"""What the server says reaches the terminal escaped, never as bytes that a
terminal acts on: its banner in -v lines, and what it sent instead of a
version in the one-line error.  And the -vvv and -v of lines that share a
connection or add to a tunnel: said for the tunnels that asked, while they
are on it."""

from __future__ import annotations

import contextlib
import logging
import shlex
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from nbtunnel import AuthenticationError, Manager
from nbtunnel.testing.keys import new_key

from tests.rig import clients
from tests.rig.sshd import start_sshd

from .test_cli import _not_ssh, _one_line
from .test_verbose import _serve

pytestmark = pytest.mark.integration

# Retitles the window, clears the screen, returns to the line's start and
# turns the text red; then a right-to-left override; then plain text.
BANNER = (
    b"Welcome\x1b]0;pwned\x07\x1b[2J\r\x1b[31mfake\n"
    b"\xe2\x80\xaeevil\n"
    b"Authorized use only.\n"
)


@pytest.mark.parametrize("flag", ["-v", "-vvv"])
def test_a_banner_that_would_drive_the_terminal_is_shown_escaped(
    flag: str, rig, targets, tmp_path: Path
) -> None:
    banner = tmp_path / "banner"
    banner.write_bytes(BANNER)
    with start_sshd(rig.netns, options={"Banner": str(banner)}) as server:
        _out, err, _ = _serve(
            flag, *server.args(), "-L", f"0:{targets.host}:{targets.echo}",
            server.destination,
        )  # fmt: skip
    print(err)
    assert "\x1b" not in err and "\x07" not in err and "\r" not in err
    assert "\u202e" not in err
    lines = err.splitlines()
    # Each line of it a line of ours (the carriage return ends one too).
    assert r"debug1: banner: Welcome\033]0;pwned\007\033[2J" in lines
    assert r"debug1: banner: \033[31mfake" in lines
    assert r"debug1: banner: \342\200\256evil" in lines
    assert "debug1: banner: Authorized use only." in lines


@contextlib.contextmanager
def _not_a_version_server() -> Iterator[int]:
    """A server that answers with lines of escape sequences, never a
    version: paramiko gives up after 100 and quotes the last one."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn = server.accept()[0]
            except OSError:
                return
            held.append(conn)
            with contextlib.suppress(OSError):
                conn.sendall(b"\x1b]0;pwned\x07\x1b[2Jjunk\r\n" * 101)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(5)
        for conn in held:
            conn.close()


def test_what_a_server_sent_instead_of_a_version_is_quoted_escaped() -> None:
    with _not_a_version_server() as port:
        status, out, err, _ = _not_ssh(port)
    print(err)
    assert status == 1
    line = _one_line(err, out)
    assert f"127.0.0.1 port {port} did not answer as an SSH server" in line
    assert r"\033]0;pwned\007\033[2Jjunk" in line
    assert "\x1b" not in err and "\x07" not in err


class _Asks(paramiko.ServerInterface):
    """A server that logs nobody in and asks (keyboard-interactive) with
    words that would drive a terminal: ``questions`` None says them as
    information only, with no question."""

    def __init__(self, questions: list[tuple[str, bool]] | None) -> None:
        self.questions = questions

    def get_allowed_auths(self, username: str) -> str:
        return "keyboard-interactive"

    def check_auth_interactive(
        self, username: str, submethods: str
    ) -> paramiko.InteractiveQuery:
        query = paramiko.InteractiveQuery(
            "\x1b]0;pwned\x07Login", "Your password\x1b[2J expires\r\ntoday"
        )
        for text, echo in self.questions or ():
            query.add_prompt(text, echo)
        return query

    def check_auth_interactive_response(self, responses: list[str]) -> int:
        return paramiko.AUTH_FAILED


@contextlib.contextmanager
def _asking(
    tmp_path: Path, questions: list[tuple[str, bool]] | None
) -> Iterator[list[str]]:
    """A line that logs in to an :class:`_Asks` server on loopback."""
    new_key(tmp_path / "host", "host")
    host_key = paramiko.Ed25519Key(filename=str(tmp_path / "host"))
    server = socket.create_server(("127.0.0.1", 0))
    transports: list[paramiko.Transport] = []

    def serve() -> None:
        while True:
            try:
                conn = server.accept()[0]
            except OSError:
                return
            transport = paramiko.Transport(conn)
            transports.append(transport)
            transport.add_server_key(host_key)
            with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
                transport.start_server(server=_Asks(questions))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield [
            "-p", str(server.getsockname()[1]),
            "-o", "StrictHostKeyChecking=no",
            "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
            "-o", "NumberOfPasswordPrompts=1",
            "-L", "0:127.0.0.1:9", "u@127.0.0.1",
        ]  # fmt: skip
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(5)
        for transport in transports:
            transport.close()


def test_keyboard_interactive_questions_are_asked_escaped(
    manager: Manager, tmp_path: Path
) -> None:
    asked: list[str] = []

    def prompt(text: str, secret: bool) -> str:
        asked.append(text)
        return "wrong"

    questions = [("Pass\x1b[31mword: ", False)]
    with _asking(tmp_path, questions) as line, pytest.raises(AuthenticationError):
        manager.open(shlex.join(line), prompt=prompt)
    assert asked == [
        "\\033]0;pwned\\007Login\nYour password\\033[2J expires\ntoday\n"
        "Pass\\033[31mword: "
    ]


def test_keyboard_interactive_information_is_quoted_escaped_in_one_line(
    manager: Manager, tmp_path: Path
) -> None:
    with _asking(tmp_path, None) as line, pytest.raises(AuthenticationError) as info:
        manager.open(shlex.join(line), prompt=lambda text, secret: "")
    text = str(info.value)
    print(text)
    assert "\x1b" not in text and "\n" not in text and "\r" not in text
    assert "\\033]0;pwned\\007Login Your password\\033[2J expires today" in text


# -- which tunnel hears what, on one connection -------------------------------


def _paramiko_lines(caplog: pytest.LogCaptureFixture) -> dict[str, int]:
    """How many of paramiko's -vvv lines each tunnel got."""
    said: dict[str, int] = {}
    for r in caplog.records:
        if getattr(r, "verbosity", None) == 3:
            said[r.tunnel_name] = said.get(r.tunnel_name, 0) + 1  # type: ignore[attr-defined]
    return said


def test_vvv_hears_a_shared_connection_while_on_it_and_only_then(
    manager: Manager, sshd, targets, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="nbtunnel")
    # An option of its own: a connection no other test's tunnel rides.
    line = sshd.line(
        "-o", "ServerAliveInterval=13", "-L", f"0:{targets.host}:{targets.echo}"
    )  # fmt: skip
    a = manager.open("-vvv " + line, name="A")  # makes the connection
    b = manager.open(line, name="B")
    c = manager.open("-vvv " + line, name="C")  # joins it
    try:

        def traffic_heard_by() -> set[str]:
            caplog.clear()
            assert clients.echoes(b, b"shared")  # a channel opened and closed
            manager.snapshots()  # events sent before this answer are in
            return set(_paramiko_lines(caplog))

        assert clients.wait_until(lambda: traffic_heard_by() == {"A", "C"})
        a.stop()
        assert clients.wait_until(lambda: traffic_heard_by() == {"C"})
        c.stop()
        assert traffic_heard_by() == set()
        assert clients.echoes(b, b"still shared")
    finally:
        for t in (a, b, c):
            t.stop()


def test_a_v_line_that_adds_to_a_tunnel_says_its_remote_forward(
    manager: Manager, sshd, targets, here, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="nbtunnel")
    options = ("-o", "ServerAliveInterval=14")
    tunnel = manager.open(sshd.line(*options, "-L", f"0:{targets.host}:{targets.echo}"))
    shown: list[str] = []
    try:
        joined = manager.open(
            "-v " + sshd.line(*options, "-R", f"127.0.0.1:0:127.0.0.1:{here.echo}"),
            show=shown.append,
        )
        assert joined is tunnel
        port = tunnel.forwards[1].listen_port
        print("\n".join(shown))
        assert (
            "debug1: Requesting remote forward: the server to listen on 127.0.0.1:0"
            in shown
        )
        assert (
            f"debug1: remote forward success: the server listens on 127.0.0.1:{port}"
            in shown
        )
        assert (
            f"debug1: Remote forwarding on the server's 127.0.0.1 port {port}: "
            f"this machine connects to 127.0.0.1:{here.echo}"
        ) in shown
        assert shown[0] == (
            f"debug1: the line joins tunnel '{tunnel.name}' and its live SSH "
            "connection, nothing to connect: its forwards are added to it"
        )
        # And logged, as the tunnel's own lines.
        told = [r for r in caplog.records if getattr(r, "verbosity", None) == 1]
        assert {r.tunnel_name for r in told} == {tunnel.name}  # type: ignore[attr-defined]
        assert any(f"127.0.0.1:{port}" in r.getMessage() for r in told)
    finally:
        tunnel.stop()
