"""The server's words made safe to print, as OpenSSH's ``strnvis`` makes them.

A banner, a version string, a keyboard-interactive instruction, a refusal's
reason: the server chooses every byte, and a terminal acts on some of them
(``ESC ]0;title BEL`` retitles the window, ``ESC [2J`` clears the screen, a
carriage return writes over the line, ``U+202E`` reverses what follows).
Each character a terminal could act on is shown as the octal escapes of its
UTF-8 bytes (``ESC`` as ``\\033``), as ssh's own ``debug1:`` lines show it;
letters of every script, spaces and tabs stay as they are.  A byte that is
not UTF-8 is shown as its escape too.
"""

from __future__ import annotations

import unicodedata

# A surrogateescape-decoded byte that was not UTF-8: U+DC80..U+DCFF.
_RAW_LOW, _RAW_HIGH = 0xDC80, 0xDCFF


def _safe(char: str) -> bool:
    # isprintable() is False for every "Other" and "Separator" character but
    # the ASCII space: controls, format characters (bidirectional
    # overrides), line breaks; the other spaces (U+00A0...) only move the
    # cursor, as a tab does.
    return char.isprintable() or char == "\t" or unicodedata.category(char) == "Zs"


def _escape(char: str) -> str:
    code = ord(char)
    if _RAW_LOW <= code <= _RAW_HIGH:
        data = bytes([code - 0xDC00])
    else:
        data = char.encode("utf-8", "surrogatepass")
    return "".join(f"\\{byte:03o}" for byte in data)


def _text(text: str | bytes) -> str:
    if isinstance(text, bytes):
        return text.decode("utf-8", "surrogateescape")
    return text


def escaped(text: str | bytes) -> str:
    """``text`` as one line a terminal only shows: every control character
    (line breaks included) as its octal escape."""
    text = _text(text)
    if all(map(_safe, text)):
        return text
    return "".join(c if _safe(c) else _escape(c) for c in text)


def escaped_lines(text: str | bytes) -> list[str]:
    """``text`` split at its line breaks (any of them: ``\\r\\n``, ``\\r``,
    ``\\n``, ...), each line :func:`escaped`: a multi-line banner is said as
    several lines, none of which can move the cursor."""
    return [escaped(line) for line in _text(text).splitlines()]
