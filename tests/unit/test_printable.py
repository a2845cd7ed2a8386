"""The server's words on a terminal: escaped as OpenSSH escapes them, in -v
lines and in the messages that quote them (the whole of it against sshd:
test_verbose.py in tests/integration)."""

from __future__ import annotations

from nbtunnel.ssh.printable import escaped, escaped_lines
from nbtunnel.ssh.trace import Trace

BANNER = b"Welcome\x1b]0;pwned\x07\x1b[2J\r\x1b[31mfake"


def test_control_characters_are_shown_as_octal_escapes() -> None:
    assert escaped(BANNER) == r"Welcome\033]0;pwned\007\033[2J\015\033[31mfake"
    assert escaped("a\x00b\x7fc\x08d") == r"a\000b\177c\010d"
    # One line: a line break is escaped too.
    assert escaped("one\ntwo") == r"one\012two"


def test_printable_text_of_any_script_stays_as_it_is() -> None:
    for text in ("OpenSSH_9.2p1 Debian-2+deb12u3", "Grüße, 日本語, Ελληνικά", "a\tb c"):
        assert escaped(text) == text
    # A no-break space only moves the cursor, as a space does.
    assert escaped("10\u00a0GB") == "10\u00a0GB"


def test_format_characters_and_bytes_that_are_not_utf8_are_escaped() -> None:
    # A right-to-left override turns what follows around on screen.
    assert escaped("user\u202egnp.exe") == r"user\342\200\256gnp.exe"
    assert escaped(b"caf\xe9 \xff") == r"caf\351 \377"
    # The C1 control CSI (U+009B) starts an escape sequence on some terminals.
    assert escaped("\u009b2J") == r"\302\2332J"


def test_escaping_twice_changes_nothing() -> None:
    once = escaped(BANNER)
    assert escaped(once) == once


def test_lines_are_split_at_every_kind_of_line_break_each_escaped() -> None:
    assert escaped_lines(b"first\r\nsecond\rthird\n\x1b[2Jfourth\n") == [
        "first",
        "second",
        "third",
        r"\033[2Jfourth",
    ]
    assert escaped_lines("") == []
    assert escaped_lines("a\u2028b") == ["a", "b"]


def test_each_trace_line_is_escaped_and_split() -> None:
    said: list[tuple[int, str, str]] = []
    trace = Trace(3, lambda *line: said.append(line)).child("jump host 1: ")
    trace(1, "Remote version string %s", "SSH-2.0-x\x1b[2J")
    trace(1, "banner: %s", "two\nlines\x07")
    trace.paramiko("Banner: \x1b]0;pwned\x07")
    assert said == [
        (1, r"jump host 1: Remote version string SSH-2.0-x\033[2J", "verbose"),
        (1, "jump host 1: banner: two", "verbose"),
        (1, r"jump host 1: lines\007", "verbose"),
        (3, r"jump host 1: Banner: \033]0;pwned\007", "paramiko"),
    ]
    assert all("\x1b" not in text and "\x07" not in text for _, text, _ in said)
