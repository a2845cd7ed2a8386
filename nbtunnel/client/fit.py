"""Text fitted to a width: wrapped lines, and shell commands continued with ``\\``.

``width=None`` means no limit (a notebook's text, a caller that fits it
itself): the text comes back as it was, one line.  Words are never broken,
so a URL, a path or a spec stays whole and copyable; a word longer than the
width stands alone on its line.
"""

from __future__ import annotations

import re
import shlex
import textwrap
from collections.abc import Sequence

# Narrower than this, wrapping makes a column of single words: a terminal
# that small soft-wraps the lines better than we would.
NARROWEST = 30


def wrap(
    text: str, width: int | None, indent: str = "", subsequent: str | None = None
) -> list[str]:
    """``text`` as lines of at most ``width`` columns, the first after
    ``indent`` and the others after ``subsequent`` (default: ``indent``)."""
    after = indent if subsequent is None else subsequent
    if width is None:
        return [indent + text]
    lines = textwrap.wrap(
        text,
        max(width, NARROWEST),
        initial_indent=indent,
        subsequent_indent=after,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return lines or [indent.rstrip()]


def _units(words: Sequence[str]) -> list[tuple[str, ...]]:
    """Quoted words, each flag with its value (``-o X``, ``-L spec``) as one unit."""
    quoted = [shlex.quote(word) for word in words]
    units: list[tuple[str, ...]] = []
    i = 0
    while i < len(quoted):
        word = quoted[i]
        value = quoted[i + 1] if i + 1 < len(quoted) else None
        if word.startswith("-") and value is not None and not value.startswith("-"):
            units.append((word, value))
            i += 2
        else:
            units.append((word,))
            i += 1
    return units


def command(words: Sequence[str], width: int | None, indent: str = "") -> list[str]:
    """A shell command as lines a shell reads back as one: where a line would
    pass ``width`` it goes on after a ``\\``, a flag kept with its value when
    they fit on one line."""
    whole = indent + shlex.join(words)
    if width is None or len(whole) <= max(width, NARROWEST):
        return [whole]
    more = indent + "    "
    room = max(width, NARROWEST) - len(" \\")
    lines: list[list[str]] = [[]]

    def place(piece: str) -> None:
        line = lines[-1]
        used = len(indent if len(lines) == 1 else more) + len(" ".join(line))
        if line and used + 1 + len(piece) > room:
            lines.append([piece])
        else:
            line.append(piece)

    for unit in _units(words):
        if len(unit) > 1 and len(more) + len(" ".join(unit)) > room:
            for word in unit:  # too long together even on a line of its own
                place(word)
        else:
            place(" ".join(unit))
    return [
        (indent if i == 0 else more)
        + " ".join(line)
        + (" \\" if i < len(lines) - 1 else "")
        for i, line in enumerate(lines)
    ]


def python_string(head: str, text: str, tail: str, width: int | None) -> list[str]:
    """``>>> {head}'{text}'{tail}`` as a Python prompt shows it, the string
    cut into adjacent literals on ``...`` lines where it would pass
    ``width`` (inside parentheses, so the lines still read as one)."""
    whole = f">>> {head}{text!r}{tail}"
    if width is None or len(whole) <= max(width, NARROWEST):
        return [whole]
    if not head.endswith("("):
        head, tail = head + "(", tail + ")"
    pad = "... " + " " * len(head)
    room = max(width, NARROWEST) - len(pad) - 2  # the quotes
    room = max(room, 10)
    pieces = [""]
    for word in re.findall(r"\S+\s*", text):
        if pieces[-1] and len(pieces[-1]) + len(word) > room:
            pieces.append("")
        # Adjacent literals join exactly: a word longer than a line is cut.
        while len(pieces[-1]) + len(word) > room:
            cut = room - len(pieces[-1])
            pieces[-1] += word[:cut]
            pieces.append("")
            word = word[cut:]
        pieces[-1] += word
    lines = [f">>> {head}{pieces[0]!r}", *(f"{pad}{piece!r}" for piece in pieces[1:])]
    if len(lines[-1] + tail) <= max(width, NARROWEST):
        lines[-1] += tail
    else:
        lines.append(pad + tail.strip())
    return lines
