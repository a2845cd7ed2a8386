""" "Did you mean": the helper, and the grammar's words for a mistyped key,
value or flag (one line naming the guess, never the whole list)."""

from __future__ import annotations

import pytest
from nbtunnel.errors import SpecError
from nbtunnel.grammar.flags import SUPPORTED_OPTIONS
from nbtunnel.grammar.spec import parse
from nbtunnel.grammar.ssh_keywords import (
    GSSAPI_PATCH_KEYWORDS,
    SSH_CONFIG_KEYWORDS,
    is_ssh_keyword,
)
from nbtunnel.grammar.suggest import (
    closest,
    did_you_mean,
    mistyped_command,
    mistyped_long_flag,
)


@pytest.mark.parametrize(
    ("word", "choices", "found"),
    [
        ("StrictHostKeyCheking", SUPPORTED_OPTIONS, "StrictHostKeyChecking"),
        # ssh's option names ignore case, and so does the guess.
        ("stricthostkeycheking", SUPPORTED_OPTIONS, "StrictHostKeyChecking"),
        ("SERVERALIVEINTERVL", SUPPORTED_OPTIONS, "ServerAliveInterval"),
        ("Tunnel", SUPPORTED_OPTIONS, None),
        ("ForwardAgent", SUPPORTED_OPTIONS, None),
        ("yse", ("yes", "no", "accept-new", "ask", "off"), "yes"),
        ("YSE", ("yes", "no"), "yes"),
        ("maybe", ("yes", "no", "auto"), None),
        ("stp", ("list", "stop", "panel", "help"), "stop"),
        ("", ("list", "stop"), None),
    ],
)
def test_closest(word: str, choices: tuple[str, ...], found: str | None) -> None:
    assert closest(word, choices) == found
    assert did_you_mean(word, choices) == (f"did you mean {found}?" if found else "")


def test_case_counts_where_asked() -> None:
    # Tunnel names are case-sensitive: "DB" is not "db"; "dbb" is a typo of it...
    assert closest("DB", ["db", "web"], fold_case=False) is None
    assert closest("dbb", ["db", "web"], fold_case=False) == "db"
    assert closest("Db", ["db"], fold_case=True) == "db"
    # ...and a word in another case is the word, where case does not count.
    assert closest("d", ["D", "L"]) == "D"


@pytest.mark.parametrize(
    ("words", "found"),
    [
        (["stp", "db"], "did you mean %tunnel stop?"),
        (["lsit"], "did you mean %tunnel list?"),
        (["pnael"], "did you mean %tunnel panel?"),
        # A flag makes it an ssh line: its bare word is a destination.
        (["stp", "-L", "9000:db:80"], None),
        (["-N", "stp"], None),
        (["db.example.com"], None),
        ([], None),
    ],
)
def test_mistyped_command(words: list[str], found: str | None) -> None:
    error = mistyped_command(words, USAGES, "%tunnel")
    if found is None:
        assert error is None
        return
    assert error is not None
    assert str(error) == f"unknown command '{words[0]}'; {found}"
    assert error.text == words[0]


USAGES = {
    "list": "%tunnel [list]",
    "stop": "%tunnel stop NAME|all",
    "panel": "%tunnel panel",
    "help": "%tunnel help",
}


@pytest.mark.parametrize(
    ("words", "said"),
    [
        (["list", "x"], "%tunnel list does not take 'x'; usage: %tunnel [list]"),
        (
            ["panel", "a", "b"],
            "%tunnel panel does not take 'a b'; usage: %tunnel panel",
        ),
        (["stop"], "usage: %tunnel stop NAME|all"),
    ],
)
def test_a_command_with_words_it_does_not_take_gets_its_usage(
    words: list[str], said: str
) -> None:
    # Never "unknown command 'list'; did you mean %tunnel list?".
    error = mistyped_command(words, USAGES, "%tunnel")
    assert error is not None and str(error) == said
    assert "did you mean" not in str(error)


@pytest.mark.parametrize(
    ("words", "found"),
    [
        (["--nmae", "db", "-L", "1:a:2", "h"], "--name"),
        (["--no-reconect", "h"], "--no-reconnect"),
        (["--name", "--nmae", "h"], None),  # the value of --name is a name
        (["--", "--nmae"], None),  # after "--" nothing is a flag
        (["--xyzzy", "h"], None),  # nothing close: the grammar's own error
        (["--name", "x", "h"], None),
    ],
)
def test_mistyped_long_flag(words: list[str], found: str | None) -> None:
    flags = ("--name", "--help", "--no-reconnect")
    error = mistyped_long_flag(words, flags, with_value=("--name",))
    if found is None:
        assert error is None
        return
    assert error is not None
    assert str(error).endswith(f"; did you mean {found}?")


def _error(line: str) -> str:
    with pytest.raises(SpecError) as info:
        parse(line)
    return str(info.value)


def test_a_mistyped_option_key_gets_the_one_it_is_close_to() -> None:
    message = _error("-o StrictHostKeyCheking=no host")
    assert message == (
        "-o 'StrictHostKeyCheking': nbtunnel has no such option; "
        "did you mean StrictHostKeyChecking?"
    )
    assert "\n" not in message
    assert _error("-o localforwad=9000:db:80 host").endswith(
        "did you mean LocalForward?"
    )


def test_an_option_key_close_to_none_points_at_the_list_instead() -> None:
    message = _error("-o NoSuchThing=yes host")
    assert message == (
        "-o 'NoSuchThing': nbtunnel has no such option; "
        "the supported ones: nbtunnel --help (%tunnel? in a notebook)"
    )
    assert not any(key in message for key in SUPPORTED_OPTIONS)


UNSUPPORTED = sorted(
    {k.lower() for k in (*SSH_CONFIG_KEYWORDS, *GSSAPI_PATCH_KEYWORDS)}
    - {k.lower() for k in SUPPORTED_OPTIONS}
)


@pytest.mark.parametrize("key", UNSUPPORTED)
def test_a_real_ssh_option_is_unsupported_never_another_guessed(key: str) -> None:
    # ConnectionAttempts is not ReconnectAttempts, ForwardX11 not LocalForward.
    message = _error(f"-o {key}=yes host")
    assert message == (
        f"-o '{key}': an ssh option nbtunnel does not support (yet); "
        "the supported ones: nbtunnel --help (%tunnel? in a notebook)"
    )


@pytest.mark.parametrize(
    ("key", "spelled"),
    [
        ("ConnectionAttempts", "ConnectionAttempts"),
        ("FORWARDX11", "ForwardX11"),
        ("ClearAllForwardings", "ClearAllForwardings"),
        ("gssapikeyexchange", "GSSAPIKeyExchange"),
    ],
)
def test_the_table_holds_ssh_keywords_in_any_case(key: str, spelled: str) -> None:
    assert is_ssh_keyword(key)
    assert spelled in (*SSH_CONFIG_KEYWORDS, *GSSAPI_PATCH_KEYWORDS)


def test_every_supported_ssh_name_is_an_ssh_keyword() -> None:
    # nbtunnel's own options are the ones ssh lacks; the others are ssh's.
    own = {
        "Reconnect",
        "ReconnectMaxDelay",
        "ReconnectAttempts",
        "FastPath",
        "OwnerOnly",
        "ReusePort",
    }
    for key in SUPPORTED_OPTIONS:
        assert is_ssh_keyword(key) == (key not in own), key
    assert len(SSH_CONFIG_KEYWORDS) == len(set(SSH_CONFIG_KEYWORDS)) == 104


def test_an_ssh_keyword_saying_pass_is_no_secret() -> None:
    # ProxyUseFdpass says "pass" but holds none; the value may be echoed.
    assert "does not support" in _error("-o ProxyUseFdpass=yes host")
    assert "never put secrets" in _error("-o Passphrase=x host")


def test_a_typo_of_an_unsupported_ssh_option_names_it_not_a_supported_one() -> None:
    assert _error("-o ConnectionAtempts=3 host") == (
        "-o 'ConnectionAtempts': no such option (ssh has ConnectionAttempts, "
        "which nbtunnel does not support yet); the supported ones: "
        "nbtunnel --help (%tunnel? in a notebook)"
    )


@pytest.mark.parametrize(
    ("option", "guess"),
    [
        ("StrictHostKeyChecking=yse", "yes"),
        ("StrictHostKeyChecking=ak", "ask"),
        ("BatchMode=noo", "no"),
        ("OwnerOnly=atuo", "auto"),
        ("LogLevel=debg", "DEBUG"),
    ],
)
def test_a_mistyped_value_gets_the_one_it_is_close_to(option: str, guess: str) -> None:
    key, value = option.split("=")
    message = _error(f"-o {option} host")
    assert message.startswith(f"option '{key}' does not take '{value}': ")
    assert f"did you mean {guess}? (use one of " in message


def test_a_value_close_to_none_lists_the_few_there_are() -> None:
    assert _error("-o OwnerOnly=maybe host") == (
        "option 'OwnerOnly' does not take 'maybe': use one of yes, no, auto"
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("-d 1080 host", "unknown option '-d'; did you mean -D?"),
        ("-r 9000:x:80 host", "unknown option '-r'; did you mean -R?"),
        ("-j bastion host", "unknown option '-j'; did you mean -J?"),
        (
            "--no-reconect host",
            "unknown option '--no-reconect'; did you mean --no-reconnect?",
        ),
    ],
)
def test_a_mistyped_flag_gets_the_one_it_is_close_to(line: str, message: str) -> None:
    assert _error(line) == message


def test_an_unknown_flag_close_to_none_shows_the_usage() -> None:
    message = _error("-Z host")
    assert message.startswith("unknown option '-Z'\nusage:")
    assert "did you mean" not in message
