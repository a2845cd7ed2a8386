""" "Did you mean": the known word closest to a mistyped one.

Shared by every place that refuses a word from a fixed list: ``-o`` keys and
their values, flags, the commands of ``nbtunnel`` and ``%tunnel``, tunnel
names.  An ``-o`` key that is a real ssh keyword is no typo: it gets no guess.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence

from ..errors import SpecError
from .ssh_keywords import KEYWORDS, is_ssh_keyword

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
    words: Sequence[str], usages: Mapping[str, str], program: str
) -> SpecError | None:
    """``stp x`` for ``stop x``: the error for a mistyped command of
    ``program`` (``usages``: each command's usage line), or None.  Call it
    once the words failed as an ssh line: a bare word is a destination, so
    a line with any flag (``-L``...) is an ssh line, and only a line of
    bare words can be a command mistyped.  A command given words it does
    not take (``list x``) gets its usage, not itself as a guess."""
    if not words or any(word.startswith("-") for word in words):
        return None
    command = words[0]
    if command in usages:
        usage = f"usage: {usages[command]}"
        extra = " ".join(words[1:])
        if not extra:
            return SpecError(usage, text=command, reason=usage)
        message = f"{program} {command} does not take '{extra}'; {usage}"
        return SpecError(message, text=extra, reason=usage)
    guess = closest(command, usages)
    if guess is None:
        return None
    reason = f"did you mean {program} {guess}?"
    message = f"unknown command '{command}'; {reason}"
    return SpecError(message, text=command, reason=reason)


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


# Where the -o keys nbtunnel has are listed.
LISTED = "the supported ones: nbtunnel --help (%tunnel? in a notebook)"


def unsupported_key(key: str, supported: Sequence[str]) -> SpecError:
    """The error for ``-o key=...`` where nbtunnel has no option ``key``
    (``supported``: the ones it has).

    A real ssh keyword gets no guess: the nearest supported name would mean
    something else (ConnectionAttempts is not ReconnectAttempts).  Any other
    key is a typo of the nearest of every name, ssh's and nbtunnel's: "did
    you mean" it when nbtunnel has it, else which ssh option it was.
    """
    if is_ssh_keyword(key):
        said = f"an ssh option nbtunnel does not support (yet); {LISTED}"
    else:
        guess = closest(key, (*supported, *KEYWORDS.values()))
        if guess is None:
            said = f"nbtunnel has no such option; {LISTED}"
        elif guess in supported:
            said = f"nbtunnel has no such option; did you mean {guess}?"
        else:
            said = (
                f"no such option (ssh has {guess}, which nbtunnel does not "
                f"support yet); {LISTED}"
            )
    return SpecError(f"-o '{key}': {said}", text=key, reason="unsupported option")
