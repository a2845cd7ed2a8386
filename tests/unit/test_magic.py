"""%tunnel's own words, before anything connects (a real inline manager, no server)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from IPython.core.error import UsageError
from nbtunnel import Manager, SpecError
from nbtunnel.ui.magic import USAGE, TunnelMagics, TunnelTable, run


@pytest.fixture
def manager() -> Iterator[Manager]:
    m = Manager(engine="inline")
    yield m
    m.close()


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["--name"], "--name needs a value"),
        (["stop"], "usage: %tunnel stop NAME|all"),
        (["stop", "a", "b"], "usage: %tunnel stop NAME|all"),
        (["stop", "nosuch"], "no tunnel named 'nosuch' is open (none is open)"),
        (["-KL"], "usage: %tunnel -KL [bind_address:]port"),
        (["-KD", "1080"], "no -D forward listens on 1080"),
        (["-KR", "x:y:z"], "bad -KR 'x:y:z'"),
        (["-KL", "abc"], "bad -KL 'abc': port 'abc' is not a number"),
        (["-KD"], "usage: %tunnel -KD [bind_address:]port"),
        (["-L", "9000:db", "user@host"], "'9000:db'"),
        (["user@host"], "no forward"),
        # A mistyped command; a bare word is a host, so only once the line
        # failed as an ssh line, and only a line without a flag.
        (["stp", "db"], "unknown command 'stp'; did you mean %tunnel stop?"),
        (["lsit"], "unknown command 'lsit'; did you mean %tunnel list?"),
        (["list", "x"], "%tunnel list does not take 'x'; usage: %tunnel [list]"),
        (["stp", "-L", "0:a:1", "h"], "nbtunnel runs no remote command: 'h'"),
        (["--nmae", "db", "-L", "0:a:1", "h"], "'--nmae'; did you mean --name?"),
    ],
)
def test_bad_words_say_what_is_wrong(
    manager: Manager, words: list[str], message: str
) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        run(words, manager)


def test_list_and_help(manager: Manager, capsys: pytest.CaptureFixture[str]) -> None:
    table = run([], manager)
    assert isinstance(table, TunnelTable) and repr(table) == "no tunnels"
    assert isinstance(run(["list"], manager), TunnelTable)
    assert run(["help"], manager) is None
    assert capsys.readouterr().out.strip() == USAGE.strip()


@pytest.mark.parametrize(
    "words",
    [
        ["--help"],
        ["-h"],
        ["-L", "0:a:1", "h", "--help"],  # after the host, as -V
        ["-vh", "-L", "0:a:1", "h"],  # in a bundle
        ["--name", "db", "-L", "0:a:1", "-h", "h"],
    ],
)
def test_help_asked_anywhere_among_the_flags_shows_it(
    manager: Manager, capsys: pytest.CaptureFixture[str], words: list[str]
) -> None:
    assert run(words, manager) is None
    assert capsys.readouterr().out.strip() == USAGE.strip()
    assert manager.tunnels() == []


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["--name", "--help", "-L", "0:a:1"], "no destination"),  # a name
        (["-L", "0:a:1", "h", "--", "--help"], "nbtunnel runs no remote command"),
    ],
)
def test_help_is_no_value_and_nothing_after_dashdash(
    manager: Manager, words: list[str], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        run(words, manager)


def test_errors_become_one_line_usage_errors() -> None:
    magics = TunnelMagics(shell=None)
    with pytest.raises(UsageError, match="cannot split the line"):
        magics.tunnel("-L 'unbalanced")
    with pytest.raises(UsageError, match="'9000:db'") as caught:
        magics.tunnel("-L 9000:db user@host")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_errors_show_the_usage_of_the_magic() -> None:
    magics = TunnelMagics(shell=None)
    for line in ("-Z user@host", "-L 0:db:5432"):
        with pytest.raises(UsageError) as caught:
            magics.tunnel(line)
        message = str(caught.value)
        assert "usage: %tunnel [-46CfgNnTVv] [-c cipher_spec]" in message, message
        assert "nbtunnel [" not in message and "[ssh]" not in message


def test_dash_v_prints_the_version(
    manager: Manager, capsys: pytest.CaptureFixture[str]
) -> None:
    from nbtunnel._version import __version__

    assert run(["-V"], manager) is None
    assert capsys.readouterr().out.startswith(f"nbtunnel {__version__}, paramiko ")
