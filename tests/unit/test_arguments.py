"""The public API's arguments: a wrong one is one TypeError (or SpecError)
naming the argument, what it accepts and what it got, raised at the call,
before anything starts (a real inline manager, no server)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import nbtunnel
import pytest
from nbtunnel import Manager, SpecError
from nbtunnel.grammar.spec import parse

LINE = "-L 0:localhost:80 user@host"


@pytest.fixture
def manager() -> Iterator[Manager]:
    m = Manager(engine="inline")
    yield m
    m.close()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (None, "the command line must be a string or a list of strings, not None"),
        (9000, "the command line must be a string or a list of strings, not int"),
        (
            b"-L 1:a:2 h",
            "the command line must be a string or a list of strings, not bytes",
        ),
        (
            ["-L", 9000, "h"],
            "the command line must be a string or a list of strings; word 2 is int: 9000",
        ),
    ],
)
def test_a_line_that_is_no_line(manager: Manager, line: Any, message: str) -> None:
    for call in (parse, nbtunnel.open, manager.open):
        with pytest.raises(TypeError) as info:
            call(line)
        assert str(info.value) == message
    assert manager.engine_pid is None  # refused before the engine started


def test_a_tuple_of_words_is_a_line() -> None:
    assert parse(("-L", "1:a:2", "h")) == parse("-L 1:a:2 h")


def _two(text: str, secret: bool) -> str | None:
    return None


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("yes", "prompt must be a callable (text, secret) -> str | None, not str"),
        (
            lambda text: "yes",
            "prompt must be a callable (text, secret) -> str | None; "
            "<lambda> cannot take (text, secret)",
        ),
    ],
)
def test_a_prompt_that_cannot_be_asked(
    manager: Manager, prompt: Any, message: str
) -> None:
    with pytest.raises(TypeError) as info:
        manager.open(LINE, prompt=prompt)
    assert str(info.value) == message
    assert manager.engine_pid is None


def test_input_itself_is_no_prompt(manager: Manager) -> None:
    # The most likely mistake: input takes the question only.
    with pytest.raises(TypeError, match="input cannot take"):
        nbtunnel.open(LINE, prompt=input)


@pytest.mark.parametrize(
    "prompt", [None, _two, lambda text, secret: None, lambda *asked: None]
)
def test_prompts_that_can_be_asked_pass(manager: Manager, prompt: Any) -> None:
    # They get as far as the line: this one has no forward to open.
    with pytest.raises(SpecError, match="has no forward"):
        manager.open("user@host", prompt=prompt)


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        (3, TypeError, "name must be a string (the tunnel's name), not int"),
        ("", SpecError, "name must be a non-empty string without line breaks, not ''"),
        ("a\nb", SpecError, "without line breaks, not 'a\\nb'"),
    ],
)
def test_a_bad_name(manager: Manager, name: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        manager.open(LINE, name=name)


@pytest.mark.parametrize(
    ("engine", "error", "message"),
    [
        (3, TypeError, "engine must be 'process' or 'inline', not int"),
        ("thread", ValueError, "engine must be 'process' or 'inline', not 'thread'"),
    ],
)
def test_a_bad_engine(engine: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        Manager(engine=engine)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.get(None), "name must be a tunnel's name or number, not None"),
        (
            lambda m: m.cancel("-L", None),
            "listen must be '[bind_address:]port' or a port number, not None",
        ),
        (
            lambda m: m.cancel(None, 9000),
            "flag must be one of -L, -R, -D, -KL, -KR, -KD, not None",
        ),
        (
            lambda m: m.add("db", []),
            "tunnel must be a Tunnel (from Manager.open), not str",
        ),
        (
            lambda m: nbtunnel.panel("db"),
            "manager must be a nbtunnel.Manager or None, not str",
        ),
    ],
)
def test_other_entry_points(
    manager: Manager, call: Callable[[Manager], object], message: str
) -> None:
    with pytest.raises(TypeError, match=re.escape(message)):
        call(manager)


def test_numbers_where_a_number_is_meant(manager: Manager) -> None:
    assert manager.get(1) is None  # a tunnel's number, none open
    with pytest.raises(SpecError, match="no -L forward listens on 9000"):
        manager.cancel("-L", 9000)
