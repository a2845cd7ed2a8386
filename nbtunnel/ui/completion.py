"""Tab completion for ``%tunnel``: the words of the ssh grammar, ``Host``
aliases, tunnel names and listening ports.

:func:`candidates` is pure: the words before the cursor in, whole words
out, with what lies outside the grammar (the ssh config's hosts, the
manager's tunnels) asked of a :class:`Known`.  :func:`matches` fits them
to IPython's token, which ends at ``=``, ``@``, ``:`` and ``,``;
:func:`register` adds them to the shell's completer as a matcher of
IPython's API v2 (IPython 8.6 to 9), which can keep Python's names out.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from IPython.core.completer import (
    CompletionContext,
    SimpleCompletion,
    context_matcher,
)
from IPython.core.prefilter import is_shadowed

from ..client import manager as managers
from ..errors import TunnelError
from ..grammar.flags import ACCEPTED_FORMS, CHOICES, SUPPORTED_OPTIONS, SWITCHES
from ..grammar.forwards import KIND_OF_FLAG
from ..settings import ssh_config

SUBCOMMANDS = ("list", "stop", "panel", "help")
CANCEL = ("-KL", "-KR", "-KD")
NAME = "--name"
FLAGS = (*ACCEPTED_FORMS, *SWITCHES, NAME)
# Flags whose value names a host: its aliases complete there too.
_HOST_VALUES = ("-J",)
_HOST_OPTIONS = ("ProxyJump", "HostName")
# The line from the magic's name on: "%tunnel ...", "t = %tunnel ...".
_MAGIC = re.compile(r"(?:^|.*[\s=])%tunnel(?=\s)")
# "tunnel ...", which automagic runs as %tunnel: IPython's prefilter calls
# it only when "tunnel" is the line's whole first name ("tunnel.x" is not)
# and what follows is no assignment (its AssignmentChecker: "=" or ","); a
# blank must follow too, and no Python operator ("tunnel == 1", "tunnel[0]",
# "tunnel -= 1"): words a %tunnel line never starts with.
_AUTOMAGIC = re.compile(r"\s*tunnel\s+(?![\s=,!()<>+*/%^&|.\[\]:]|-=)")
_RUNNING = ("up", "starting", "reconnecting")


class Known(Protocol):
    """What completion offers that the grammar does not know."""

    def hosts(self, config_file: str | None) -> list[str]:
        """The ``Host`` aliases of the ssh config (``-F``'s file, if given)."""

    def names(self) -> list[str]:
        """The names of the live tunnels."""

    def ports(self, kind: str) -> list[str]:
        """The ports that live forwards of ``kind`` (local, remote, dynamic) listen on."""


def candidates(words: Sequence[str], current: str, known: Known) -> list[str]:
    """Whole words that may stand where ``current`` is being typed after ``words``."""
    if words and words[-1] in (*ACCEPTED_FORMS, NAME):
        return _value(words, current, known)
    if current.startswith("-o") and len(current) > 2:  # ssh's -oKey=Value
        return ["-o" + word for word in _option(current[2:], words, known)]
    if not words:
        first = (*SUBCOMMANDS, *FLAGS, *CANCEL)
        return _starting(current, first) + _hosts(words, current, known)
    if words[0] in CANCEL:
        if len(words) > 1:
            return []
        return _starting(current, known.ports(KIND_OF_FLAG[words[0].replace("K", "")]))
    if words[0] == "stop":
        return _starting(current, [*known.names(), "all"]) if len(words) == 1 else []
    if words[0] in SUBCOMMANDS:
        return []
    # A flag, or the destination (an alias never starts with "-").
    return _starting(current, FLAGS) + _hosts(words, current, known)


def _value(words: Sequence[str], current: str, known: Known) -> list[str]:
    flag = words[-1]
    if flag == "-o":
        return _option(current, words, known)
    if flag in _HOST_VALUES:
        return _hosts(words, current, known)
    # -i and -F take paths: IPython's own file completion offers those
    # (register); the others take what only the user knows.
    return []


def _option(text: str, words: Sequence[str], known: Known) -> list[str]:
    """``Key=`` for a key being typed (any case), then the values of keys
    that take one word from a list, and hosts for the keys naming one."""
    key, equals, value = text.partition("=")
    if not equals:
        lowered = key.lower()
        return [f"{k}=" for k in SUPPORTED_OPTIONS if k.lower().startswith(lowered)]
    canonical = next((k for k in SUPPORTED_OPTIONS if k.lower() == key.lower()), "")
    if canonical in _HOST_OPTIONS:
        return [key + "=" + host for host in _hosts(words, value, known)]
    choices = CHOICES.get(canonical, ())
    lowered = value.lower()
    return [f"{key}={c}" for c in choices if c.lower().startswith(lowered)]


def _hosts(words: Sequence[str], current: str, known: Known) -> list[str]:
    """Aliases for the host part of ``[user@]host``, or of a -J list's last hop."""
    cut = max(current.rfind(","), current.rfind("@")) + 1
    before, host = current[:cut], current[cut:]
    return [before + alias for alias in _starting(host, known.hosts(_config(words)))]


def _config(words: Sequence[str]) -> str | None:
    """The file of the line's ``-F`` (the last one wins, as in ssh)."""
    found = None
    for flag, value in itertools.pairwise(words):
        if flag == "-F":
            found = value
    return found


def _starting(prefix: str, words: Iterable[str]) -> list[str]:
    return [word for word in dict.fromkeys(words) if word.startswith(prefix)]


def split(line: str, automagic: bool = True) -> tuple[list[str], str] | None:
    """The words of a ``%tunnel`` line before the cursor, and the one under
    it (``""`` after a blank); None when the line is not ``%tunnel``'s.
    ``automagic``: whether IPython would run ``tunnel ...`` as the magic."""
    found = _MAGIC.match(line) or (_AUTOMAGIC.match(line) if automagic else None)
    if found is None:
        return None
    rest = line[found.end() :]
    words = _words(rest)
    if rest[-1:].isspace() or not words:
        return words, ""
    return words[:-1], words[-1]


def _words(text: str) -> list[str]:
    """Shell words; a quote still open closes at the cursor (the word being
    typed is then what it holds so far)."""
    for closing in ("", "'", '"'):
        try:
            return shlex.split(text + closing)
        except ValueError:
            continue
    return text.split()  # a quote open and an escape at the end: a guess


def matches(line: str, token: str, known: Known, automagic: bool = True) -> list[str]:
    """What IPython puts in place of ``token``, the end of ``line`` after its
    last delimiter (``=``, ``@``, ``:``, ``,``, a blank...)."""
    parts = split(line, automagic)
    if parts is None:
        return []
    words, current = parts
    if not current.endswith(token):
        return []  # a quoted word IPython split otherwise: offer nothing wrong
    cut = len(current) - len(token)
    return [
        c[cut:] for c in candidates(words, current, known) if c[:cut] == current[:cut]
    ]


class Live:
    """What this process knows: the ssh config files and the default manager."""

    def hosts(self, config_file: str | None) -> list[str]:
        home = os.path.expanduser("~")
        return ssh_config.host_aliases(ssh_config.files_for(config_file, home), home)

    def names(self) -> list[str]:
        # managers.tunnels() starts no manager (and no engine) of its own.
        return [t.name for t in managers.tunnels()]

    def ports(self, kind: str) -> list[str]:
        if not managers.tunnels():
            return []
        try:
            snaps = managers.default_manager().snapshots()
        except TunnelError:
            return []
        return [
            str(f.listen_port)
            for t in snaps
            if t.state in _RUNNING
            for f in t.forwards
            if f.kind == kind and f.state in _RUNNING and f.listen_port is not None
        ]


LIVE = Live()


IDENTIFIER = "nbtunnel.tunnel_magic"


def register(ip: Any) -> None:
    """Complete ``%tunnel`` lines in this shell (once, however often loaded).

    A matcher of IPython's API v2 (IPython 8.6 on) that suppresses the
    others when it has something to offer: the classic ``complete_command``
    hook (``set_hook``) keeps Jedi's Python names in front of its own.
    """
    unregister(ip)
    completer = ip.Completer

    def tunnel_matcher(context: CompletionContext) -> dict[str, Any]:
        automagic = _automagic(ip, context.full_text)
        parts = split(context.text_until_cursor, automagic)
        if parts is None:
            return {"completions": []}
        if parts[0][-1:] in (["-i"], ["-F"]):  # a path: IPython's own completion
            paths: dict[str, Any] = completer.file_matcher(context)
            return {**paths, "suppress": True}
        found = matches(context.text_until_cursor, context.token, LIVE, automagic)
        return {
            "completions": [SimpleCompletion(text) for text in found],
            "suppress": True,  # Python's names and keywords mean nothing here
            "ordered": True,  # subcommands and flags first, as written
        }

    # Marks it as API v2 (a plain function would be called with the token).
    matcher = context_matcher(identifier=IDENTIFIER)(tunnel_matcher)
    completer.custom_matchers.append(matcher)


def _automagic(ip: Any, cell: str) -> bool:
    """Whether IPython would run this cell's ``tunnel ...`` as ``%tunnel``:
    automagic is on, the cell is one line (only those are prefiltered), and
    no Python name ``tunnel`` shadows the magic (IPython's own check)."""
    if not getattr(ip, "automagic", False) or "\n" in cell.strip("\n"):
        return False
    return not is_shadowed("tunnel", ip)  # type: ignore[no-untyped-call]  # IPython's, untyped


def unregister(ip: Any) -> None:
    """Stop completing ``%tunnel`` (``%unload_ext nbtunnel``)."""
    kept = [
        m
        for m in ip.Completer.custom_matchers
        if getattr(m, "matcher_identifier", None) != IDENTIFIER
    ]
    ip.Completer.custom_matchers[:] = kept
