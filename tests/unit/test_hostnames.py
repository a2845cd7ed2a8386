"""Host names DNS cannot carry: said in words, at parse time where this
machine looks the name up, and wherever one is resolved (never Python's
bare ``UnicodeError``)."""

from __future__ import annotations

import socket

import pytest
from nbtunnel.errors import ForwardError, SpecError
from nbtunnel.forward.here import connect_here
from nbtunnel.forward.listener import Listener
from nbtunnel.grammar.forwards import parse_forward
from nbtunnel.grammar.hostnames import host_name_problem

LONG = "a" * 70
LONG_NAME = f"{LONG}.example.com"


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        (LONG_NAME, "a label is longer than 63 characters"),
        ("a" * 64, "a label is longer than 63 characters"),
        ("ä" * 70, "a label is longer than 63 characters"),
        ("ä" * 60, "a label is longer than 63 characters"),  # 66 as punycode
        ("ä" * 55, None),  # 61 as punycode
        # Only characters IDNA drops: an empty label, not a long one.
        (
            "\u200b",
            "a label ('\\u200b') is empty once the characters DNS ignores are dropped",
        ),
        (
            "db.\u00ad\u200b.example.com",
            "a label ('\\xad\\u200b') is empty once the characters DNS ignores "
            "are dropped",
        ),
        ("a\u200b.example.com", None),  # "a" once dropped
        ("\u0627a", "the label '\u0627a' is no valid international name"),
        ("db..internal", "a label (between dots) is empty"),
        (".example.com", "a label (between dots) is empty"),
        (".".join(["a" * 60] * 5), "it is longer than 253 characters"),
        ("a" * 63 + ".example.com", None),
        ("example.com.", None),  # fully qualified
        ("münchen.de", None),
        ("my_host", None),
        ("192.0.2.1", None),
        ("2001:db8::1", None),
    ],
)
def test_host_name_problem(host: str, problem: str | None) -> None:
    assert host_name_problem(host) == problem


@pytest.mark.parametrize(
    "host", [LONG_NAME, "db..internal", ".example.com", "\u200b", "\u0627a"]
)
def test_the_problems_are_those_pythons_resolver_refuses(host: str) -> None:
    # What the check says in words is what getaddrinfo would raise on.
    with pytest.raises(UnicodeError):
        socket.getaddrinfo(host, 80)


@pytest.mark.parametrize(
    ("flag", "text", "host"),
    [
        ("-L", f"{LONG_NAME}:9000:db:5432", LONG_NAME),  # bind address, here
        ("-D", f"{LONG}:1080", LONG),
        ("-R", f"9000:{LONG_NAME}:80", LONG_NAME),  # -R's target is reached here
        ("-R", "9000:db..internal:80", "db..internal"),
    ],
)
def test_names_this_machine_looks_up_are_refused_at_parse_time(
    flag: str, text: str, host: str
) -> None:
    with pytest.raises(SpecError) as info:
        parse_forward(flag, text)
    assert info.value.text == host
    problem = host_name_problem(host)
    assert f"host name '{host}' is not valid: {problem}" in str(info.value)
    # The form is right: no list of forms for a name that is wrong.
    assert "accepted forms" not in str(info.value)


@pytest.mark.parametrize(
    ("flag", "text"),
    [
        ("-L", f"9000:{LONG_NAME}:80"),  # the server looks it up
        ("-R", f"{LONG_NAME}:9000:db:80"),  # the server binds it
    ],
)
def test_names_the_server_looks_up_are_left_to_it(flag: str, text: str) -> None:
    assert parse_forward(flag, text).text == text


def test_a_name_reached_from_here_is_a_forward_error() -> None:
    # A remote SOCKS client (-R PORT) names hosts at run time.
    with pytest.raises(ForwardError, match="a label is longer than 63 characters"):
        connect_here(LONG_NAME, 80)


def test_a_listen_address_is_a_forward_error() -> None:
    # The parser refuses it first; a Listener made directly still says it.
    listener = Listener(host=LONG, port=0)
    with pytest.raises(ForwardError, match=f"host name '{LONG}' is not valid"):
        listener.bind()
