""" "Did you mean": the known word closest to a mistyped one.

Shared by every place that refuses a word from a fixed list: ``-o`` keys and
their values, flags, the commands of ``nbtunnel`` and ``%tunnel``, tunnel
names.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from ..errors import SpecError

# difflib's own default: "StrictHostKeyCheking" finds StrictHostKeyChecking,
# "Tunnel" finds nothing among the -o keys.
CUTOFF = 0.6


def closest(word: str, choices: Iterable[str], *, fold_case: bool = True) -> str | None:
    """The choice most like ``word`` (as the choice is spelled), or None when
    none is close; ``fold_case`` for words that ignore case, as ssh's option
    names and values do."""
    spelled: dict[str, str] = {}
    for choice in choices:
        spelled.setdefault(choice.lower() if fold_case else choice, choice)
    key = word.lower() if fold_case else word
    if key in spelled:
        return spelled[key]  # the same word in another case: "d" for "-D"
    found = difflib.get_close_matches(key, list(spelled), n=1, cutoff=CUTOFF)
    return spelled[found[0]] if found else None


def did_you_mean(word: str, choices: Iterable[str], *, fold_case: bool = True) -> str:
    """``"did you mean X?"`` for the closest choice, or ``""`` when none is close."""
    found = closest(word, choices, fold_case=fold_case)
    return f"did you mean {found}?" if found is not None else ""


def mistyped_command(
    words: Sequence[str], commands: Iterable[str], program: str
) -> SpecError | None:
    """``stp x`` for ``stop x``: the error for a mistyped command of
    ``program``, or None.  Call it once the words failed as an ssh line: a
    bare word is a destination, so a line with any flag (``-L``...) is an
    ssh line, and only a line of bare words can be a command mistyped."""
    if not words or any(word.startswith("-") for word in words):
        return None
    guess = closest(words[0], commands)
    if guess is None:
        return None
    reason = f"did you mean {program} {guess}?"
    message = f"unknown command '{words[0]}'; {reason}"
    return SpecError(message, text=words[0], reason=reason)


def mistyped_long_flag(
    words: Sequence[str], flags: Sequence[str], with_value: Iterable[str] = ()
) -> SpecError | None:
    """``--nmae`` for ``--name``: ssh has no long flags, so a word starting
    with ``--`` near one of ``flags`` is a typo of it (the value after a
    flag of ``with_value`` is not looked at)."""
    valued = frozenset(with_value)
    for before, word in zip(["", *words], words, strict=False):
        if word == "--":
            return None
        if before in valued or not word.startswith("--") or word in flags:
            continue
        guess = closest(word, flags)
        if guess is not None:
            reason = f"did you mean {guess}?"
            return SpecError(
                f"unknown option '{word}'; {reason}", text=word, reason=reason
            )
    return None
