"""The help of ``nbtunnel`` and ``%tunnel``, built from the grammar's tables."""

from __future__ import annotations

import string

import pytest
from nbtunnel import SpecError, parse
from nbtunnel._version import __version__
from nbtunnel.grammar.flags import (
    ACCEPTED_FORMS,
    SUPPORTED_OPTIONS,
    UNSUPPORTED_FLAGS,
    USAGE,
    usage,
)
from nbtunnel.ui import help
from nbtunnel.ui.magic import USAGE as MAGIC_USAGE


def _accepted_switches() -> set[str]:
    """Every flag without a value that the grammar takes, found by trying each."""
    found = set()
    for letter in string.ascii_letters + string.digits:
        if f"-{letter}" in ACCEPTED_FORMS:
            continue
        try:
            parse(f"-{letter} -L 0:localhost:1 host")
        except SpecError:
            continue
        found.add(f"-{letter}")
    return found


def _listed_switches() -> set[str]:
    return {
        name
        for names, _ in help.SWITCHES
        for name in names.split(", ")
        if name[1] != "-"
    }


def _shown(entry: str, lines: list[str]) -> bool:
    """Whether a line is ``entry``, alone or with its description beside it."""
    return any(line == entry or line.startswith(entry + "  ") for line in lines)


def test_every_flag_the_grammar_takes_is_described() -> None:
    assert set(help.FORWARDS) | set(help.OPTIONS) == set(ACCEPTED_FORMS)
    assert _listed_switches() == _accepted_switches()
    # -V is the command's; the grammar itself refuses it, with the way to it.
    assert "nbtunnel -V" in UNSUPPORTED_FLAGS["V"]


@pytest.mark.parametrize("width", [100, 79, 60, 40])
def test_the_help_shows_each_flag_with_its_forms_within_the_width(width: int) -> None:
    text = help.cli(width)
    lines = text.splitlines()
    for flag, forms in ACCEPTED_FORMS.items():
        for form in forms:
            assert _shown(f"  {flag} {form}", lines), (flag, form)
    joined = " ".join(text.split())  # the -o names wrap anywhere between them
    assert ", ".join(SUPPORTED_OPTIONS) in joined
    for switch in _accepted_switches() | {"-V", "--no-reconnect"}:
        assert switch in text
    unwrapped = joined.replace(" \\ ", " ")  # a command goes on after a "\\"
    assert (
        "nbtunnel -J you@bastion.example.com -L 5432:localhost:5432 you@db.internal"
        in unwrapped
    )
    assert "nbtunnel -R 8080:localhost:8050" in text
    assert "nbtunnel -D 1080" in text
    assert "nbtunnel demo" in text
    assert max(len(line) for line in lines) <= min(width, help.WIDEST)


def test_the_synopsis_names_the_program_and_wraps_under_it() -> None:
    assert USAGE.startswith("usage: nbtunnel [-46CfgNnTVv] [-c cipher_spec]")
    assert "[ssh]" not in USAGE
    magic = usage("%tunnel", 50).splitlines()
    assert magic[0].startswith("usage: %tunnel [-46")
    indent = " " * len("usage: %tunnel ")
    assert all(line.startswith(indent + "[") for line in magic[1:-1])
    assert magic[-1].endswith("destination")
    assert max(len(line) for line in magic) <= 50
    for flag in ACCEPTED_FORMS:
        assert f"[{flag} " in USAGE


def test_the_magic_help_has_the_reference_examples_and_the_embedded_server() -> None:
    for flag, forms in ACCEPTED_FORMS.items():
        for form in forms:
            assert _shown(f"  {flag} {form}", MAGIC_USAGE.splitlines())
    assert "%tunnel stop NAME|all" in MAGIC_USAGE and "%tunnel -V" in MAGIC_USAGE
    assert "--name NAME" in MAGIC_USAGE
    assert "from nbtunnel.testing import EmbeddedServer" in MAGIC_USAGE
    assert "t = %tunnel -L 0:localhost:{service.port} $SSH" in MAGIC_USAGE
    assert "-h, --help" not in MAGIC_USAGE  # the command's, not the magic's
    assert max(len(line) for line in MAGIC_USAGE.splitlines()) <= 80


def test_the_version_names_nbtunnel_and_what_it_runs_on() -> None:
    text = help.version()
    assert text.startswith(f"nbtunnel {__version__}, paramiko ")
    assert ", Python 3." in text and "\n" not in text


@pytest.mark.parametrize(
    ("words", "asked"),
    [
        (["-V"], True),
        (["-NV", "host"], True),
        (["-L", "0:db:5432", "host", "-V"], True),  # flags after the host count
        (["-l", "-V", "host"], False),  # the value of -l
        (["-lV", "host"], False),  # ditto, in one word
        (["host", "--", "-V"], False),  # after --, not a flag
        (["-v", "host"], False),
        (["--Verbose"], False),
    ],
)
def test_asks_version_reads_the_flags_as_getopt_does(
    words: list[str], asked: bool
) -> None:
    assert help.asks_version(words) is asked


@pytest.mark.parametrize(
    ("words", "asked"),
    [
        (["--help"], True),
        (["-h"], True),
        (["-vh", "host"], True),  # in a bundle
        (["-L", "1:a:2", "h", "--help"], True),  # after the host
        (["-L", "1:a:2", "-h", "h"], True),
        (["-l", "--help", "host"], False),  # the value of -l
        (["-lh", "host"], False),  # -l's value "h"
        (["-L", "-h", "host"], False),  # -L's value
        (["host", "--", "--help"], False),  # after --, not a flag
        (["--helpme"], False),
        (["host"], False),
    ],
)
def test_asks_help_reads_the_flags_as_asks_version_does(
    words: list[str], asked: bool
) -> None:
    assert help.asks_help(words) is asked


def test_a_long_flag_with_a_value_hides_it() -> None:
    assert help.asks_help(["--name", "--help", "h"]) is True
    assert help.asks_help(["--name", "--help", "h"], with_value=["--name"]) is False
    assert help.asks_version(["--name", "-V", "h"], with_value=["--name"]) is False
