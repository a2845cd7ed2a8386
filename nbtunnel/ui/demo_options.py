"""``nbtunnel demo``'s own words: ``--serve``, ``--size MIB``, ``--help``.

Pure, and apart from the demo (which starts a server), so that the command
can tell ``nbtunnel demo --size 8`` (the demo) from ``nbtunnel demo -L ...``
(a host called demo) without importing it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..grammar.suggest import did_you_mean

DEMO_OPTIONS = ("--serve", "--size", "--help", "-h")
DEFAULT_MIB = 64
MAX_MIB = 4096
# ASCII digits only: str.isdigit() takes "²", which int() refuses.
_WHOLE = re.compile(r"[0-9]+")
_SEE = "see nbtunnel demo --help"


class DemoArgumentError(ValueError):
    """A word the demo does not take: one line naming it and what to do."""


@dataclass(frozen=True)
class DemoOptions:
    serve: bool = False
    mib: int = DEFAULT_MIB
    help: bool = False


def parse(words: Sequence[str]) -> DemoOptions:
    """The demo's options; DemoArgumentError for the first bad word."""
    serve, mib, asked = False, DEFAULT_MIB, False
    rest = list(words)
    while rest:
        word = rest.pop(0)
        name, equals, value = word.partition("=")
        if word in ("--help", "-h"):
            asked = True
        elif word == "--serve":
            serve = True
        elif name == "--size":
            if not equals:
                if not rest:
                    raise DemoArgumentError("--size needs a value: --size MIB")
                value = rest.pop(0)
            mib = _mib(value)
        else:
            raise DemoArgumentError(_unknown(word))
    return DemoOptions(serve=serve, mib=mib, help=asked)


def _mib(value: str) -> int:
    size = int(value) if _WHOLE.fullmatch(value) else 0
    if not 1 <= size <= MAX_MIB:
        raise DemoArgumentError(
            f"--size takes a whole number of MiB, from 1 to {MAX_MIB}: got '{value}'"
        )
    return size


def _unknown(word: str) -> str:
    guess = (
        did_you_mean(word, ("--serve", "--size", "--help")) if word[:1] == "-" else ""
    )
    what = "option" if word.startswith("-") else "argument"
    return f"unknown {what} '{word}'; {guess or _SEE}"
