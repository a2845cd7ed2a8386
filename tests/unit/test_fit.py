"""Text fitted to a terminal's width: wrapped lines, commands, tables."""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import replace

import pytest
from nbtunnel.client import display, fit
from nbtunnel.status import ForwardStats, TunnelSnapshot

from .snapshots import forward_snapshot

COMMAND = [
    "ssh", "-N", "-L", "42631:localhost:39901", "-F", "none",
    "-i", "/tmp/nbtunnel-demo-abcdefgh/id_ed25519", "-o", "IdentitiesOnly=yes",
    "-o", "UserKnownHostsFile=/tmp/nbtunnel-demo-abcdefgh/known_hosts",
    "-o", "ProxyCommand=nc %h %p", "-p", "37427", "demo@127.0.0.1",
]  # fmt: skip


def _as_sh_reads_it(command: str) -> list[str]:
    """The words sh makes of ``command`` (joining its "\\"-newline lines)."""
    script = f'set -- {command}\nprintf "%s\\0" "$@"'
    ran = subprocess.run(["sh", "-c", script], capture_output=True, check=True)
    return ran.stdout.decode().split("\0")[:-1]


def _longest(lines: list[str]) -> int:
    return max(len(line) for line in lines)


def test_wrap_keeps_words_whole_and_indents_what_follows() -> None:
    text = "see it at http://gw.example.com:41000/a/long/path/that/does/not/break " * 2
    lines = fit.wrap(text, 40, "  ", "    ")
    assert lines[0] == "  see it at" and all(
        line.startswith("    ") for line in lines[1:]
    )
    assert " ".join(line.strip() for line in lines) == text.strip()
    assert fit.wrap(text, None) == [text]  # no width: as it was


@pytest.mark.parametrize("width", [None, 200, 100, 60, 40])
def test_a_command_reads_back_as_the_same_words(width: int | None) -> None:
    lines = fit.command(COMMAND, width, "   ")
    assert _as_sh_reads_it("\n".join(lines)) == COMMAND
    for line in lines[:-1]:
        assert line.endswith(" \\")
    if width is not None:
        # Longer only where one word is longer than a line can be.
        for line in lines:
            words = line.strip().removesuffix(" \\")
            assert len(line) <= width or " " not in words, line
    if width == 100:
        assert "    -o 'ProxyCommand=nc %h %p'" in "\n".join(lines)


@pytest.mark.parametrize("width", [None, 200, 100, 60, 30])
def test_a_python_string_reads_back_as_the_same_value(width: int | None) -> None:
    text = shlex.join(COMMAND[2:])
    lines = fit.python_string("server = ", text, "", width)
    if width is not None:
        assert _longest(lines) <= width
    namespace: dict[str, object] = {}
    exec("\n".join(line[4:] for line in lines), namespace)  # without >>> and ...
    assert namespace["server"] == text
    call = fit.python_string("t = f(", "-L 0:db:5432 " * 5, " + server)", width)
    namespace["f"] = lambda line: line
    exec("\n".join(line[4:] for line in call), namespace)
    assert namespace["t"] == "-L 0:db:5432 " * 5 + text


def _tunnels() -> list[TunnelSnapshot]:
    local = forward_snapshot(
        "-L 0:localhost:5432",
        listen_host="127.0.0.1",
        listen_port=40000,
        target_host="localhost",
        target_port=5432,
        stats=ForwardStats(last_error="connect to localhost port 5432 refused"),
    )
    remote = forward_snapshot(
        "-R 0:127.0.0.1:8050",
        listen_host="localhost",
        listen_port=41000,
        target_host="127.0.0.1",
        target_port=8050,
    )
    return [
        TunnelSnapshot(
            id=4,
            destination="analyst@gw.example.com",
            state="up",
            error=None,
            forwards=(local, replace(remote, state="up")),
            name="dash",
        )
    ]


def test_a_table_too_wide_becomes_a_block_per_forward() -> None:
    wide = display.text_table(_tunnels())
    assert _longest(wide.splitlines()) > 150  # the table, and the hint of the -R
    for width in (100, 80, 60, 40):
        text = display.text_table(_tunnels(), width=width)
        if width >= 60:
            assert "  listens on  this machine 127.0.0.1:40000" in text.splitlines()
        lines = text.splitlines()
        assert _longest(lines) <= width, text
        assert lines[0].startswith("dash  -L  up ")
        joined = " ".join(text.split())
        assert "listens on this machine 127.0.0.1:40000" in joined
        assert "→ target the server connects to localhost:5432" in joined
        assert "conns 0/0 ↑ sent 0 B ↓ received 0 B" in joined
        assert "last error connect to localhost port 5432 refused" in joined
        assert "share http://gw.example.com:41000/" in text
        assert "GatewayPorts clientspecified (or yes)" in joined


def test_a_table_that_fits_stays_a_table() -> None:
    table = display.text_table(_tunnels()[:1], width=500)
    assert table.splitlines()[0].startswith("tunnel  forward  listens on")


def test_share_lines_wrap_the_advice() -> None:
    lines = display.share_lines(_tunnels(), 60)
    assert lines[0].startswith("share http://gw.example.com:41000/")
    assert len(lines) > 3 and _longest(lines) <= 60
    assert all(line.startswith("  ") for line in lines[1:])
    assert len(display.share_lines(_tunnels())) == 2  # no width: a line each
