"""%tunnel's completion, word by word (the kernel's own is in
tests/notebook/test_completion.py): what the grammar's tables allow, and
what the ssh config and the live tunnels add (given here as plain lists)."""

from __future__ import annotations

import string
from collections.abc import Iterator

import pytest
from IPython.core.completer import provisionalcompleter
from IPython.core.interactiveshell import InteractiveShell
from nbtunnel import SpecError
from nbtunnel.grammar.flags import ACCEPTED_FORMS, CHOICES, SUPPORTED_OPTIONS, SWITCHES
from nbtunnel.grammar.spec import TunnelSpec, parse
from nbtunnel.ui import completion
from nbtunnel.ui.completion import FLAGS, candidates, matches, split
from traitlets.config import Config

LINE = ["-L", "0:db:5432", "host"]


class Known:
    """What the ssh config and the manager would say, as plain lists."""

    def __init__(self) -> None:
        self.config_files: list[str | None] = []

    def hosts(self, config_file: str | None) -> list[str]:
        self.config_files.append(config_file)
        if config_file == "none":
            return []
        return ["bastion", "warehouse", "web-1"]

    def names(self) -> list[str]:
        return ["db", "dash"]

    def ports(self, kind: str) -> list[str]:
        return {"local": ["41234", "5432"], "remote": ["8080"]}.get(kind, [])


KNOWN = Known()


def test_the_switches_are_the_grammars() -> None:
    # Every switch offered changes the line; every letter that would is offered.
    plain = parse(LINE)
    for letter in string.ascii_letters + string.digits:
        flag = f"-{letter}"
        if flag in ACCEPTED_FORMS:
            continue
        try:
            spec: TunnelSpec | None = parse([flag, *LINE])
        except SpecError:
            spec = None
        changes = spec is not None and spec != plain
        assert changes == (flag in SWITCHES), flag
    for flag in ACCEPTED_FORMS:  # each takes a value, the next word
        with pytest.raises(SpecError):
            parse([*LINE, flag])
    assert set(FLAGS) == {*ACCEPTED_FORMS, *SWITCHES, "--name"}


@pytest.mark.parametrize(
    ("words", "current", "expected"),
    [
        # The first word: subcommands, flags and cancels, hosts.
        (
            [],
            "",
            [
                *completion.SUBCOMMANDS,
                *FLAGS,
                *completion.CANCEL,
                *("bastion", "warehouse", "web-1"),
            ],
        ),
        ([], "p", ["panel"]),
        ([], "-K", ["-KL", "-KR", "-KD"]),
        ([], "w", ["warehouse", "web-1"]),
        # Later: flags and the destination, not the subcommands.
        (LINE[:2], "-", list(FLAGS)),
        (LINE[:2], "", [*FLAGS, "bastion", "warehouse", "web-1"]),
        (LINE[:2], "analyst@w", ["analyst@warehouse", "analyst@web-1"]),
        (LINE[:2], "-p", ["-p"]),
        # -o: keys with their "=", in any case; then the values of choices.
        (["-o"], "Strict", ["StrictHostKeyChecking="]),
        (["-o"], "stricthost", ["StrictHostKeyChecking="]),
        (
            ["-o"],
            "StrictHostKeyChecking=",
            ["StrictHostKeyChecking=" + c for c in CHOICES["StrictHostKeyChecking"]],
        ),
        (
            ["-o"],
            "stricthostkeychecking=A",
            ["stricthostkeychecking=accept-new", "stricthostkeychecking=ask"],
        ),
        (["-o"], "BatchMode=", ["BatchMode=yes", "BatchMode=no"]),
        (["-o"], "OwnerOnly=a", ["OwnerOnly=auto"]),
        (["-o"], "ConnectTimeout=", []),  # a number: nothing to offer
        (["-o"], "NoSuchKey=", []),
        (["-o"], "ProxyJump=u@b", ["ProxyJump=u@bastion"]),
        ([], "-oBatch", ["-oBatchMode="]),
        (LINE[:2], "-oBatchMode=n", ["-oBatchMode=no"]),
        # Hosts for -J, hop by hop; -F's file is the one read.
        (["-J"], "b", ["bastion"]),
        (["-J"], "bastion,me@w", ["bastion,me@warehouse", "bastion,me@web-1"]),
        (["-F", "none", "-L", "0:a:1"], "", list(FLAGS)),
        # Values only the user knows; paths are IPython's to complete.
        (["-L"], "", []),
        (["-p"], "", []),
        (["--name"], "", []),
        (["-i"], "", []),
        # stop: the live tunnels' names, and all.
        (["stop"], "", ["db", "dash", "all"]),
        (["stop"], "d", ["db", "dash"]),
        (["stop", "db"], "", []),
        # -KL/-KR/-KD: the ports the live forwards of that kind listen on.
        (["-KL"], "", ["41234", "5432"]),
        (["-KL"], "4", ["41234"]),
        (["-KR"], "", ["8080"]),
        (["-KD"], "", []),
        (["-KL", "41234"], "", []),
        (["panel"], "", []),
        (["list"], "", []),
    ],
)
def test_candidates(words: list[str], current: str, expected: list[str]) -> None:
    assert candidates(words, current, KNOWN) == expected


def test_every_option_completes() -> None:
    keys = candidates(["-o"], "", KNOWN)
    assert keys == [f"{k}=" for k in SUPPORTED_OPTIONS]


def test_the_config_file_of_the_line_is_read() -> None:
    known = Known()
    candidates(["-F", "/etc/other", "-F", "mine", "-L", "0:a:1"], "", known)
    assert known.config_files == ["mine"]  # the last -F, as in ssh
    candidates(["-L", "0:a:1"], "", known)
    assert known.config_files[-1] is None


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("%tunnel ", ([], "")),
        ("%tunnel -L 0:db:1 bas", (["-L", "0:db:1"], "bas")),
        ("t = %tunnel -o Strict", (["-o"], "Strict")),
        ("t=%tunnel -", ([], "-")),
        ("tunnel stop ", (["stop"], "")),  # automagic
        ("  %tunnel -o 'Key Va", (["-o"], "Key Va")),  # an open quote
        ('%tunnel -o "Strict', (["-o"], "Strict")),
        ('%tunnel -o "Str\\', (["-o"], '"Str\\')),  # beyond repair: a guess
        ("%tunnel -o 'Key Value' -", (["-o", "Key Value"], "-")),
        ("%tunnelx -", None),
        ("%tunnel", None),  # the magic's name itself is IPython's to complete
        ("x = tunnel -", None),
        ("print(1)", None),
        # Python that starts with the name: never automagic in IPython.
        ("tunnel = ", None),
        ("tunnel  = b", None),
        ("tunnel, other = ", None),
        ("tunnel.x", None),
        ("tunnel.x ", None),
        ("tunnel == 1", None),
        ("tunnel -= 1", None),
        ("tunnel[0] ", None),
        ("tunnel (1) ", None),
        ("tunnel ", ([], "")),
        ("tunnel -L", ([], "-L")),
        ("  tunnel  -L 0:a:1 ", (["-L", "0:a:1"], "")),
    ],
)
def test_split(line: str, expected: tuple[list[str], str] | None) -> None:
    assert split(line) == expected


@pytest.mark.parametrize("line", ["tunnel -L", "tunnel stop ", "tunnel "])
def test_without_automagic_tunnel_is_a_python_name(line: str) -> None:
    assert split(line, automagic=False) is None
    assert split("%" + line, automagic=False) is not None


@pytest.mark.parametrize(
    ("line", "token", "expected"),
    [
        # IPython's token ends at = @ : , and blanks: the matches replace it.
        ("%tunnel -o StrictHostKeyChecking=a", "a", ["accept-new", "ask"]),
        (
            "%tunnel -o StrictHostKeyChecking=",
            "",
            ["yes", "no", "accept-new", "ask", "off"],
        ),
        ("%tunnel -o Str", "Str", ["StrictHostKeyChecking="]),
        ("%tunnel -L 0:a:1 me@ware", "ware", ["warehouse"]),
        ("%tunnel -J bastion,w", "w", ["warehouse", "web-1"]),
        ("%tunnel -KL 4", "4", ["41234"]),
        ("%tunnel st", "st", ["stop"]),
        # In an open quote, the word so far.
        ("%tunnel -o 'Strict", "Strict", ["StrictHostKeyChecking="]),
        # A token that is not the word's end: nothing rather than nonsense.
        ("%tunnel -o a\\ b", "b", []),
        ("import o", "o", []),
        ("tunnel = b", "b", []),
        ("tunnel -", "-", [*FLAGS, "-KL", "-KR", "-KD"]),
    ],
)
def test_matches_replace_ipythons_token(
    line: str, token: str, expected: list[str]
) -> None:
    assert matches(line, token, KNOWN) == expected


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    """IPython's own shell and completer, in this process, with ours added
    (its history in memory: nothing written under ~/.ipython)."""
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    ip = InteractiveShell.instance(config=config)
    ip.register_magic_function(lambda line: line, "line", "tunnel")
    completion.register(ip)
    yield ip
    completion.unregister(ip)
    InteractiveShell.clear_instance()


def _texts(ip: InteractiveShell, code: str) -> list[str]:
    with provisionalcompleter():
        return [c.text for c in ip.Completer.completions(code, len(code))]


def test_the_shell_completes_tunnel_only_where_ipython_runs_the_magic(
    shell: InteractiveShell,
) -> None:
    assert "-L" in _texts(shell, "tunnel -")
    # An assignment: Python's names, none of ours.
    python = _texts(shell, "tunnel = b")
    assert "bytes" in python and "-L" not in python
    assert "-L" not in _texts(shell, "tunnel = ")
    # Two lines: IPython prefilters (runs automagic on) one-line cells only.
    assert "-L" not in _texts(shell, "x = 1\ntunnel -")
    assert "-L" in _texts(shell, "x = 1\n%tunnel -")
    # A Python name "tunnel" shadows the magic, as IPython's is_shadowed says.
    shell.user_ns["tunnel"] = 1
    assert "-L" not in _texts(shell, "tunnel -")
    assert "-L" in _texts(shell, "%tunnel -")
    del shell.user_ns["tunnel"]
    shell.automagic = False
    assert "-L" not in _texts(shell, "tunnel -")
    assert "-L" in _texts(shell, "%tunnel -")
