"""The help of ``nbtunnel`` and ``%tunnel``, and the version, for ``-V``.

Built from the grammar's own tables (``ACCEPTED_FORMS``, the ``-o`` names,
the synopsis), so a flag or an option added there shows here; only the
sentence saying what each does is written here (tests/unit/test_help.py
checks there is one for every flag the grammar takes).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Sequence
from importlib import metadata

from .._version import __version__
from ..client import fit
from ..grammar.flags import ACCEPTED_FORMS, SUPPORTED_OPTIONS, usage
from ..grammar.forwards import KIND_OF_FLAG

FORWARDS: dict[str, str] = {
    "-L": "listen here; the server connects to host:hostport (localhost: the "
    "server itself) or to its unix socket; port 0: any free port",
    "-R": "listen on the server; this machine connects to host:hostport or a "
    "unix socket; no target: a SOCKS proxy on the server; port 0: the server picks",
    "-D": "a SOCKS proxy here; the server connects where asked",
}

OPTIONS: dict[str, str] = {
    "-J": "jump hosts, in turn (none: none, despite the config)",
    "-p": "the server's port",
    "-l": "the user to log in as",
    "-i": "a private key to offer (each -i in turn)",
    "-F": "read this ssh_config, not ~/.ssh/config (none: none)",
    "-c": "ciphers to offer, comma-separated, preferred first",
    "-o": "an ssh_config option (names below); the first wins",
}

# The flags without a value, each letter as the grammar takes it.
SWITCHES: tuple[tuple[str, str], ...] = (
    ("-4, -6", "IPv4 or IPv6 addresses only"),
    ("-C", "compress the connection"),
    ("-g", "-L and -D listen on every address, not loopback only"),
    ("-v", "say what happens while connecting (-vv, -vvv: more)"),
    ("-N, -n, -T, -f", "accepted, as in ssh: a tunnel runs no command anyway"),
    ("--no-reconnect", "the same as -o Reconnect=no"),
)

_CLI_ONLY = (
    ("-V", "print the version and exit (--version: on stdout)"),
    ("-h, --help", "this help"),
)

_CLI_EXAMPLES = (
    (
        "a database on db.internal, through a bastion, on port 5432 here:",
        "nbtunnel -J you@bastion.example.com -L 5432:localhost:5432 you@db.internal",
    ),
    (
        "a dashboard running here on port 8050, shown on the server's port 8080:",
        "nbtunnel -R 8080:localhost:8050 you@shared.example.com",
    ),
    (
        "a SOCKS proxy on port 1080 to everything the server reaches:",
        "nbtunnel -D 1080 you@gateway.example.com",
    ),
)

_DEMO = (
    ("nbtunnel demo", "-L, -R and -D through an SSH server in this process"),
    ("nbtunnel demo --serve", "the same, then up until Ctrl-C to try by hand"),
)

# Where a flag's description starts; help reads best no wider than this.
_COLUMN = 26
WIDEST = 79


def _entry(names: Sequence[str], about: str, width: int) -> list[str]:
    """Each name on a line, the description in the column where descriptions
    start: beside a single short name, else under the names (beside the
    last of several, it would seem to be that one's alone)."""
    column = _COLUMN if width >= 2 * _COLUMN else 8
    pad = " " * column
    head = f"  {names[0]}"
    if len(names) == 1 and len(head) + 2 <= column:
        return fit.wrap(about, width, head.ljust(column), pad)
    return [*(f"  {name}" for name in names), *fit.wrap(about, width, pad)]


def _forms(flag: str) -> list[str]:
    return [f"{flag} {form}" for form in ACCEPTED_FORMS[flag]]


def reference(width: int, extra: Sequence[tuple[str, str]] = ()) -> list[str]:
    """The forwards, the other flags (and ``extra``), and the ``-o`` names."""
    lines = fit.wrap("forwards (any number of each, on one SSH connection):", width)
    for flag in KIND_OF_FLAG:
        lines += _entry(_forms(flag), FORWARDS[flag], width)
    lines += ["", "options:"]
    for flag in ACCEPTED_FORMS:
        if flag not in KIND_OF_FLAG:
            lines += _entry(_forms(flag), OPTIONS[flag], width)
    for names, about in (*SWITCHES, *extra):
        lines += _entry([names], about, width)
    lines += ["", *fit.wrap("-o options (ssh_config(5) names, in any case):", width)]
    lines += fit.wrap(", ".join(SUPPORTED_OPTIONS), width, "  ")
    return lines


def cli(width: int) -> str:
    """``nbtunnel --help``, fitted to ``width`` columns (at most WIDEST)."""
    width = min(width, WIDEST)
    synopsis = usage("nbtunnel", width)
    demo = fit.wrap("nbtunnel demo [--serve] [--size MIB]", width, " " * 7)
    lines = [*synopsis.splitlines(), *demo, ""]
    about = (
        "SSH port forwarding with ssh(1)'s command line: the forwards run in "
        "the foreground, a line for each event, until Ctrl-C or SIGTERM."
    )
    lines += [*fit.wrap(about, width), ""]
    lines += reference(width, _CLI_ONLY)
    lines += ["", "examples:"]
    for said, line in _CLI_EXAMPLES:
        lines += fit.wrap(said, width, "  ")
        lines += fit.command(line.split(), width, "    ")
    lines += ["", "without a server, keys or configuration:"]
    for command, about in _DEMO:
        lines += _entry([command], about, width)
    return "\n".join(lines) + "\n"


def magic(commands: str, examples: str, width: int = WIDEST) -> str:
    """``%tunnel?``: the magic's own ``commands`` and ``examples``, around
    the same reference as the command's help."""
    extra = (("--name NAME", "the tunnel's name (default: the host)"),)
    lines = [commands.rstrip(), "", *reference(width, extra), "", examples.rstrip()]
    return "\n".join(lines) + "\n"


def version() -> str:
    """What ``-V`` prints: nbtunnel's version and those it runs on, as
    ssh -V names its own and OpenSSL's."""
    parts = [f"nbtunnel {__version__}"]
    for name in ("paramiko", "cryptography"):
        # Missing when run from a checkout without it installed as a package.
        with contextlib.suppress(metadata.PackageNotFoundError):
            parts.append(f"{name} {metadata.version(name)}")
    parts.append("Python {}.{}.{}".format(*sys.version_info[:3]))
    return ", ".join(parts)


def asks_version(words: Sequence[str], with_value: Iterable[str] = ()) -> bool:
    """Whether ``-V`` is among the flags of ``words``, read as ssh's getopt
    reads them: a flag's value (``-l -V``) is not a flag; nor is the value
    of a long flag of ``with_value`` (the magic's ``--name``)."""
    return _among_flags(words, "V", (), with_value)


def asks_help(words: Sequence[str], with_value: Iterable[str] = ()) -> bool:
    """Whether ``--help``, or ``-h`` alone or in a bundle (``-vh``), is among
    the flags of ``words``, read as :func:`asks_version` reads ``-V``: as
    ``-V`` anywhere prints the version, help asked anywhere is shown (ssh,
    with no ``-h`` of its own, prints its usage for it)."""
    return _among_flags(words, "h", ("--help",), with_value)


def _among_flags(
    words: Sequence[str], letter: str, long: Sequence[str], with_value: Iterable[str]
) -> bool:
    """Whether the one-letter flag ``letter`` or a long flag of ``long`` is
    among the flags of ``words``, before any ``--``."""
    taking_value = {flag[1] for flag in ACCEPTED_FORMS}
    valued = frozenset(with_value)
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word == "--":
            return False  # what follows is not a flag
        if word in long:
            return True
        if word in valued:
            skip = True
            continue
        if not word.startswith("-") or word.startswith("--"):
            continue
        for position, found in enumerate(word[1:], start=1):
            if found == letter:
                return True
            if found in taking_value:
                skip = position == len(word) - 1  # the value is the next word
                break
    return False
