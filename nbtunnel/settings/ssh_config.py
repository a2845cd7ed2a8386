"""ssh_config(5) files: which settings apply to one host, as OpenSSH reads them.

- ``Host`` patterns (``*``, ``?``, ``!negation``) and ``Match`` with ``all``,
  ``host``, ``originalhost``, ``user`` and ``localuser``; a ``Match`` with any
  other criterion (``exec``, ``canonical``, ...) never applies;
- ``Include`` with globs, relative to ``~/.ssh`` (or ``/etc/ssh``, Windows'
  ``%PROGRAMDATA%\\ssh``, for the system file), read in place;
- the first value obtained for a keyword wins, except for the keywords
  that add up (``IdentityFile``, ``CertificateFile``, the forwards);
- ``%`` tokens and ``~`` in the keywords that take them.
"""

from __future__ import annotations

import fnmatch
import getpass
import glob
import os
import re
import shlex
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import SpecError
from ..grammar.flags import is_alias
from ..grammar.spec import TunnelSpec
from ..platform import paths

# Keywords whose every occurrence counts, in order.
MULTI = frozenset(
    {
        "identityfile",
        "certificatefile",
        "localforward",
        "remoteforward",
        "dynamicforward",
    }
)
# Keywords whose value is the rest of the line, given to a shell as it is.
RAW = frozenset({"proxycommand", "localcommand", "remotecommand"})
# Keywords that take several paths: kept quoted, so a path with blanks stays
# one path when the value is split again (resolve._files).
PATH_LISTS = frozenset({"userknownhostsfile", "globalknownhostsfile"})
MAX_DEPTH = 16  # ssh's limit on nested Includes
# /etc/ssh/ssh_config, or %PROGRAMDATA%\ssh\ssh_config on Windows.
SYSTEM_CONFIG = paths.SYSTEM_SSH_CONFIG


@dataclass
class HostConfig:
    """The options one host gets, keywords in lower case."""

    host: str
    values: dict[str, list[str]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    # What was read and what applied, as ssh -vv says it ("FILE line N: ...").
    notes: list[str] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        found = self.values.get(key.lower())
        return found[0] if found else None

    def all(self, key: str) -> list[str]:
        return list(self.values.get(key.lower(), ()))


class ConfigError(SpecError):
    """A config line that cannot be read; says the file and line."""


# "Keyword value", "Keyword=value" and "Keyword = value" are the same.
_LINE = re.compile(r"(\S+?)(?:\s*=\s*|\s+)(.*)$")


def _words(line: str) -> list[str]:
    line = line.strip()
    if not line or line.startswith("#"):
        return []
    m = _LINE.match(line)
    if m is None:
        return [line]
    if m.group(1).lower() in RAW:
        return [m.group(1), m.group(2).strip()]
    return [m.group(1), *shlex.split(m.group(2), comments=True)]


def _matches(value: str, patterns: str | list[str]) -> bool:
    """ssh's pattern-list rule: any positive match and no negated one."""
    items = patterns.split(",") if isinstance(patterns, str) else patterns
    matched = False
    for pattern in items:
        if pattern.startswith("!"):
            if fnmatch.fnmatchcase(value, pattern[1:]):
                return False
        elif fnmatch.fnmatchcase(value, pattern):
            matched = True
    return matched


class _Reader:
    def __init__(self, host: str, user: str | None, local_user: str, home: str) -> None:
        self.found = HostConfig(host)
        self.user = user
        self.local_user = local_user
        self.home = home

    def _match(self, args: list[str]) -> bool:
        pairs = iter(args)
        for criterion in pairs:
            name = criterion.lower()
            if name == "all":
                continue
            value = next(pairs, None)
            if value is None:
                return False
            subject = {
                "host": self.found.get("hostname") or self.found.host,
                "originalhost": self.found.host,
                "user": self.user or self.found.get("user") or self.local_user,
                "localuser": self.local_user,
            }.get(name)
            if subject is None or not _matches(subject, value):
                return False  # exec, canonical, ...: not something we run
        return True

    def read(self, path: str, base: str, depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            raise ConfigError(f"{path}: Include nested more than {MAX_DEPTH} deep")
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.readlines()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ConfigError(
                f"cannot read ssh config {path}: {exc.strerror}"
            ) from None
        self.found.files.append(path)
        notes = self.found.notes
        notes.append(f"Reading configuration data {path}")
        active = True
        for number, line in enumerate(lines, 1):
            try:
                words = _words(line)
            except ValueError as exc:
                raise ConfigError(f"{path} line {number}: {exc}") from None
            if not words:
                continue
            key, args = words[0].lower(), words[1:]
            where = f"{path} line {number}"
            if key in ("host", "match"):
                active = (
                    _matches(self.found.host, args)
                    if key == "host"
                    else self._match(args)
                )
                if active:
                    notes.append(f"{where}: Applying options for {' '.join(args)}")
            elif not active:
                continue
            elif key == "include":
                for pattern in args:
                    if not self._include(pattern, base, depth):
                        notes.append(f"{where}: include {pattern} matched no files")
            elif args and self._set(key, args):
                notes.append(f"{where}: {words[0]} {' '.join(args)}")

    def _include(self, pattern: str, base: str, depth: int) -> int:
        """Read the files ``pattern`` matches; how many it matched."""
        paths = _included(pattern, base, self.home)
        for path in paths:
            self.read(path, base, depth + 1)
        return len(paths)

    def _set(self, key: str, args: list[str]) -> bool:
        """Keep the value unless one came first; whether it was kept."""
        value = shlex.join(args) if key in PATH_LISTS else " ".join(args)
        values = self.found.values.setdefault(key, [])
        if key in MULTI or not values:
            values.append(value)
            return True
        return False


def _included(pattern: str, base: str, home: str) -> list[str]:
    """The files an ``Include`` pattern names, in the order ssh reads them."""
    if pattern == "~" or pattern.startswith("~/"):
        pattern = home + pattern[1:]
    if not os.path.isabs(pattern):
        pattern = os.path.join(base, pattern)
    return sorted(glob.glob(pattern))


def config_files(spec: TunnelSpec, home: str) -> list[tuple[str, str]]:
    """The ssh_config files to read, in order, each with where its Includes start.

    As ssh: ``-F file`` alone (``-F none``: no file), else ``~/.ssh/config``
    then the system's (``/etc/ssh/ssh_config``, on Windows under
    ``%PROGRAMDATA%``).
    """
    return files_for(spec.config_file, home)


def files_for(config_file: str | None, home: str) -> list[tuple[str, str]]:
    """:func:`config_files` for the ``-F`` value alone (None: no ``-F``)."""
    user_dir = os.path.join(home, ".ssh")
    if config_file == "none":
        return []
    if config_file is not None:
        path = config_file
        if path == "~" or path.startswith("~/"):
            path = home + path[1:]
        return [(os.path.abspath(path), user_dir)]
    return [
        (os.path.join(user_dir, "config"), user_dir),
        (SYSTEM_CONFIG, os.path.dirname(SYSTEM_CONFIG)),
    ]


def host_aliases(paths: list[tuple[str, str]], home: str) -> list[str]:
    """The names ``Host`` lines give, in the order met, for completing a
    destination: a pattern (``*``, ``?``) or a negation names no one host,
    and a name the command line would not take as a host is left out.

    Every ``Include`` is followed, wherever it stands; a file that cannot
    be read or a line that cannot be split is passed over, as a completion
    must not fail where a connection would say what is wrong.
    """
    found: dict[str, None] = {}

    def read(path: str, base: str, depth: int) -> None:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.readlines()
        except (OSError, ValueError):
            return
        for line in lines:
            try:
                words = _words(line)
            except ValueError:
                continue
            key = words[0].lower() if words else ""
            if key == "host":
                for name in words[1:]:
                    if is_alias(name) and not any(c in name for c in "*?!"):
                        found.setdefault(name)
            elif key == "include" and depth < MAX_DEPTH:
                for pattern in words[1:]:
                    for included in _included(pattern, base, home):
                        read(included, base, depth + 1)

    for path, base in paths:
        read(path, base, 0)
    return list(found)


def lookup(
    paths: list[tuple[str, str]],
    host: str,
    *,
    user: str | None,
    local_user: str,
    home: str,
) -> HostConfig:
    """The settings ``host`` gets from the files, read in order.

    ``paths``: (file, directory its relative Includes start from).
    ``user``: the login given on the command line, if any (for Match user).
    """
    reader = _Reader(host, user, local_user, home)
    for path, base in paths:
        reader.read(path, base)
    return reader.found


def tokens(config: HostConfig, *, port: int, user: str, home: str) -> dict[str, str]:
    """What each ``%`` token stands for, for this host."""
    return {
        "%": "%",
        "h": config.get("hostname") or config.host,
        "n": config.host,
        "p": str(port),
        "r": user,
        "u": getpass.getuser(),
        "d": home,
        "l": socket.gethostname().split(".")[0],
        "L": socket.gethostname(),
    }


def expand(value: str, table: dict[str, str], home: str) -> str:
    """``%`` tokens and a leading ``~``, as ssh expands them."""
    out = []
    chars: Iterator[str] = iter(value)
    for ch in chars:
        if ch != "%":
            out.append(ch)
            continue
        token = next(chars, "")
        if token not in table:
            raise ConfigError(f"unknown token %{token} in '{value}'")
        out.append(table[token])
    text = "".join(out)
    if text == "~" or text.startswith("~/"):
        text = home + text[1:]
    return text
