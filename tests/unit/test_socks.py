"""The SOCKS handshake parser, from tables of raw bytes fed in every split."""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import pairwise
from typing import get_args

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from nbtunnel.forward.socks import Handshake, Reason, Request, SocksError

GREET = b"\x05\x01\x00"  # SOCKS5, one method: no authentication
OK5 = b"\x05\x00"
REJECT4 = b"\x00\x5b" + bytes(6)
DATA = b"GET / HTTP/1.1\r\n\r\n"
V6 = bytes.fromhex("fd000000000000000000000000000001")


def reply5(code: int) -> bytes:
    return bytes([5, code, 0, 1]) + bytes(6)


# (input, answers expected from feed(), request, rest)
VALID = [
    pytest.param(
        GREET + b"\x05\x01\x00\x01\x0a\x00\x00\x01\x00\x50",
        OK5,
        Request(5, "10.0.0.1", 80, "ipv4"),
        b"",
        id="socks5-ipv4",
    ),
    pytest.param(
        b"\x05\x02\x02\x00" + b"\x05\x01\x00\x04" + V6 + b"\x01\xbb",
        OK5,
        Request(5, "fd00::1", 443, "ipv6"),
        b"",
        id="socks5-ipv6",
    ),
    pytest.param(
        GREET + b"\x05\x01\x00\x03\x0bdb.internal\x15\x38",
        OK5,
        Request(5, "db.internal", 5432, "domain"),
        b"",
        id="socks5-domain",
    ),
    pytest.param(
        GREET + b"\x05\x01\xff\x03\x0bbu\xcc\x88cher.de\x00\x50" + DATA,
        OK5,
        Request(5, "bu\u0308cher.de", 80, "domain"),
        DATA,
        id="socks5-pipelined-utf8-domain-and-data",
    ),
    pytest.param(
        GREET + b"\x05\x01\x00\x03\xff" + b"a" * 255 + b"\x00\x16",
        OK5,
        Request(5, "a" * 255, 22, "domain"),
        b"",
        id="socks5-255-byte-domain",
    ),
    pytest.param(
        b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00",
        b"",
        Request(4, "127.0.0.1", 80, "ipv4"),
        b"",
        id="socks4",
    ),
    pytest.param(
        b"\x04\x01\x1f\x90\x0a\x00\x00\x05" + b"u" * 255 + b"\x00" + DATA,
        b"",
        Request(4, "10.0.0.5", 8080, "ipv4"),
        DATA,
        id="socks4-userid-and-data",
    ),
    pytest.param(
        b"\x04\x01\x00\x50\x00\x00\x00\x01bob\x00db.internal\x00" + DATA,
        b"",
        Request(4, "db.internal", 80, "domain"),
        DATA,
        id="socks4a",
    ),
]

# (input, reason, everything the client is sent, part of the message); each
# input ends at the byte that makes the error certain.
ERRORS = [
    pytest.param(b"G", "general", b"", "first byte 0x47; an HTTP client", id="http"),
    pytest.param(b"\x00", "general", b"", "first byte 0x00", id="version-0"),
    pytest.param(b"\x05\x00", "not_allowed", b"\x05\xff", "no auth", id="no-methods"),
    pytest.param(
        b"\x05\x02\x01\x02", "not_allowed", b"\x05\xff", "0x01, 0x02", id="auth-only"
    ),
    pytest.param(GREET + b"\x04", "general", OK5 + reply5(1), "version 4", id="ver"),
    pytest.param(
        GREET + b"\x05\x02", "command", OK5 + reply5(7), "2 (BIND)", id="bind"
    ),
    pytest.param(
        GREET + b"\x05\x03", "command", OK5 + reply5(7), "UDP ASSOCIATE", id="udp"
    ),
    pytest.param(
        GREET + b"\x05\x01\x00\x02",
        "address_type",
        OK5 + reply5(8),
        "type 2",
        id="atyp",
    ),
    pytest.param(
        GREET + b"\x05\x01\x00\x03\x00", "general", OK5 + reply5(1), "empty", id="empty"
    ),
    pytest.param(
        GREET + b"\x05\x01\x00\x03\x05ab\x00",
        "general",
        OK5 + reply5(1),
        "NUL",
        id="nul",
    ),
    pytest.param(
        GREET + b"\x05\x01\x00\x03\x05a\xff",
        "general",
        OK5 + reply5(1),
        "UTF-8",
        id="ff",
    ),
    pytest.param(
        GREET + b"\x05\x01\x00\x03\x02a\xc3",
        "general",
        OK5 + reply5(1),
        "UTF-8",
        id="truncated-utf8",
    ),
    pytest.param(
        GREET + b"\x05\x01\x00\x01\x0a\x00\x00\x01\x00\x00",
        "general",
        OK5 + reply5(1),
        "port 0",
        id="socks5-port-0",
    ),
    pytest.param(b"\x04\x02", "command", REJECT4, "2 (BIND)", id="socks4-bind"),
    pytest.param(b"\x04\x01\x00\x00", "general", REJECT4, "port 0", id="socks4-port-0"),
    pytest.param(
        b"\x04\x01\x00\x50\x7f\x00\x00\x01" + b"u" * 256,
        "general",
        REJECT4,
        "user id is longer than 255",
        id="userid-too-long",
    ),
    pytest.param(
        b"\x04\x01\x00\x50\x00\x00\x00\x01\x00" + b"h" * 256,
        "general",
        REJECT4,
        "host name is longer than 255",
        id="hostname-too-long",
    ),
    pytest.param(
        b"\x04\x01\x00\x50\x00\x00\x00\x01\x00\x00",
        "general",
        REJECT4,
        "empty",
        id="4a-empty",
    ),
    pytest.param(
        b"\x04\x01\x00\x50\x00\x00\x00\x01\x00\xff",
        "general",
        REJECT4,
        "UTF-8",
        id="4a-ff",
    ),
]


def splits(data: bytes) -> Iterator[list[bytes]]:
    """The input whole, in two pieces at every point, and one byte at a time."""
    yield [data]
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]
    yield [data[i : i + 1] for i in range(len(data))]


def feed_all(pieces: list[bytes]) -> tuple[Handshake, bytes]:
    hs = Handshake()
    return hs, b"".join(hs.feed(piece) for piece in pieces)


@pytest.mark.parametrize(("data", "answers", "request_", "rest"), VALID)
def test_valid_handshake_in_every_split(
    data: bytes, answers: bytes, request_: Request, rest: bytes
) -> None:
    for pieces in splits(data):
        hs, sent = feed_all(pieces)
        assert (sent, hs.request, hs.rest) == (answers, request_, rest), pieces


@pytest.mark.parametrize(("data", "reason", "reply", "message"), ERRORS)
def test_error_comes_at_the_byte_that_makes_it_certain(
    data: bytes, reason: Reason, reply: bytes, message: str
) -> None:
    for pieces in ([data], [data[i : i + 1] for i in range(len(data))]):
        hs = Handshake()
        sent = b"".join(hs.feed(piece) for piece in pieces[:-1])
        with pytest.raises(SocksError, match=re.escape(message)) as caught:
            hs.feed(pieces[-1])
        assert (caught.value.reason, sent + caught.value.reply) == (reason, reply)
        assert hs.request is None
        with pytest.raises(RuntimeError, match="already failed"):
            hs.feed(b"\x00")


SOCKS5_CODES = {
    "general": 1,
    "not_allowed": 2,
    "network_unreachable": 3,
    "host_unreachable": 4,
    "refused": 5,
    "ttl_expired": 6,
    "command": 7,
    "address_type": 8,
}


@pytest.mark.parametrize("reason", get_args(Reason))
def test_replies_for_every_reason(reason: Reason) -> None:
    hs5, _ = feed_all([GREET + b"\x05\x01\x00\x01\x0a\x00\x00\x01\x00\x50"])
    assert hs5.success() == b"\x05\x00\x00\x01" + bytes(6)
    assert hs5.failure(reason) == reply5(SOCKS5_CODES[reason])
    hs4, _ = feed_all([b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00"])
    assert hs4.success() == b"\x00\x5a" + bytes(6)
    assert hs4.failure(reason) == REJECT4


def test_replies_need_a_request() -> None:
    hs = Handshake()
    assert hs.feed(GREET) == OK5
    with pytest.raises(RuntimeError, match="no SOCKS CONNECT request"):
        hs.success()
    with pytest.raises(RuntimeError, match="no SOCKS CONNECT request"):
        hs.failure("refused")


@pytest.mark.parametrize(
    ("request_", "target"),
    [
        (Request(5, "10.0.0.1", 80, "ipv4"), "10.0.0.1:80"),
        (Request(5, "::1", 80, "ipv6"), "[::1]:80"),
        (Request(4, "db", 5432, "domain"), "db:5432"),
    ],
)
def test_target(request_: Request, target: str) -> None:
    assert request_.target == target


@given(st.data())
def test_valid_handshake_split_at_random_points(data: st.DataObject) -> None:
    case = data.draw(st.sampled_from(VALID))
    raw, answers, request_, rest = case.values
    assert isinstance(raw, bytes)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(raw) - 1)))))
    bounds = [0, *cuts, len(raw)]
    pieces = [raw[a:b] for a, b in pairwise(bounds)]
    hs, sent = feed_all(pieces)
    assert (sent, hs.request, hs.rest) == (answers, request_, rest)


# The longest handshake: SOCKS4a with a 255-byte user id and a 255-byte name,
# each NUL-ended, after 8 fixed bytes (SOCKS5's longest is 519).
LONGEST = 8 + 256 + 256


def outcome(pieces: list[bytes]) -> tuple[object, ...]:
    """What feeding ``pieces`` ends in: a request, an error, or waiting for more."""
    hs = Handshake()
    sent = b""
    for piece in pieces:
        try:
            sent += hs.feed(piece)
        except SocksError as e:
            assert hs.request is None
            return ("refused", e.reason, sent + e.reply)
    if hs.request is None:
        return ("waiting", sent)
    return ("request", hs.request, sent, hs.rest)


# Any bytes, and any bytes after prefixes that take them deeper into the
# parser: to each version's fields, and to each kind of SOCKS5 address.
_any_bytes = st.binary(max_size=700)
_PREFIXES = (
    b"\x04\x01",
    b"\x04\x01\x00\x50\x00\x00\x00\x01",  # SOCKS4a: a name will follow
    GREET,
    *(GREET + b"\x05\x01\x00" + atyp for atyp in (b"\x01", b"\x03", b"\x04")),
)
_socksish = st.one_of(
    _any_bytes, *(_any_bytes.map(lambda b, p=p: p + b) for p in _PREFIXES)
)


@settings(max_examples=500)
@given(st.data())
def test_any_bytes_in_any_pieces_end_the_same_and_never_raise_otherwise(
    data: st.DataObject,
) -> None:
    raw = data.draw(_socksish)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(raw) - 1)))))
    bounds = [0, *cuts, len(raw)]
    whole = outcome([raw])
    assert outcome([raw[a:b] for a, b in pairwise(bounds)]) == whole
    kind = whole[0]
    event(str(kind))
    if kind == "waiting":
        # Every message is bounded: past the longest, it must have decided.
        assert len(raw) <= LONGEST
        assert whole[1] in (b"", OK5)
    elif kind == "request":
        request = whole[1]
        assert isinstance(request, Request)
        assert request.host and 1 <= request.port <= 65535
    else:
        assert whole[1] in get_args(Reason)
