"""The forwards' pure decisions: SOCKS replies from failures, -R bind addresses, the
SOCKS handshake driver over a real socket pair, and what -R refusals say."""

from __future__ import annotations

import errno
import socket
import threading

import pytest
from nbtunnel.errors import ConnectError, ForwardError
from nbtunnel.forward.dynamic import negotiate, reason_for
from nbtunnel.forward.remote import bind_address
from nbtunnel.forward.socks import Request, SocksError
from nbtunnel.grammar.forwards import parse_forward
from nbtunnel.ssh.remote import RemoteListener, _refusal


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ForwardError("x", code=1, detail="open failed"), "not_allowed"),
        (ForwardError("x", code=2, detail="Connection refused"), "refused"),
        (ForwardError("x", code=2, detail="No route to host"), "host_unreachable"),
        (
            ForwardError("x", code=2, detail="Network is unreachable"),
            "network_unreachable",
        ),
        (
            ForwardError("x", code=2, detail="Name or service not known"),
            "host_unreachable",
        ),
        (
            ForwardError("x", code=2, detail="Temporary failure in name resolution"),
            "host_unreachable",
        ),
        (ForwardError("x", code=0), "host_unreachable"),
        (ForwardError("x", code=4, detail="resource shortage"), "general"),
        (ConnectError("lost"), "general"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "refused"),
        (OSError(errno.ENETUNREACH, "unreachable"), "network_unreachable"),
        (OSError(errno.EHOSTUNREACH, "no route"), "host_unreachable"),
        (socket.gaierror(-2, "Name or service not known"), "host_unreachable"),
        (TimeoutError(), "host_unreachable"),
        (OSError(errno.EMFILE, "too many open files"), "general"),
    ],
)
def test_socks_reply_for_each_failure(error: BaseException, reason: str) -> None:
    assert reason_for(error) == reason


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("8000:localhost:80", "localhost"),  # no bind address: ssh sends "localhost"
        ("*:8000:localhost:80", ""),
        (":8000:localhost:80", ""),
        ("0.0.0.0:8000:localhost:80", "0.0.0.0"),
        ("[::1]:8000:localhost:80", "::1"),
        ("10.0.0.5:0", "10.0.0.5"),
    ],
)
def test_remote_bind_address_as_openssh_sends_it(text: str, sent: str) -> None:
    assert bind_address(parse_forward("-R", text)) == sent


def _drive(client_bytes: bytes, connect) -> tuple[object, bytes]:
    """Run negotiate() on one end of a socket pair; returns (result or error, reply)."""
    ours, theirs = socket.socketpair()
    outcome: list[object] = []

    def serve() -> None:
        try:
            outcome.append(negotiate(ours, connect))
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)
        finally:
            ours.close()

    server = threading.Thread(target=serve)
    server.start()
    with theirs:
        theirs.sendall(client_bytes)
        theirs.shutdown(socket.SHUT_WR)
        reply = bytearray()
        while data := theirs.recv(4096):
            reply.extend(data)
    server.join(10)
    return outcome[0], bytes(reply)


SOCKS5_CONNECT = b"\x05\x01\x00" + b"\x05\x01\x00\x03\x02db\x15\x38"


def test_negotiate_connects_and_returns_what_followed_the_request() -> None:
    asked: list[Request] = []

    def connect(request: Request) -> str:
        asked.append(request)
        return "a channel"

    result, reply = _drive(SOCKS5_CONNECT + b"SELECT 1", connect)
    assert result == ("a channel", asked[0], b"SELECT 1")
    assert asked[0].target == "db:5432"
    assert reply == b"\x05\x00" + b"\x05\x00\x00\x01" + bytes(6)


def test_negotiate_answers_a_failed_connect_in_socks_words() -> None:
    def connect(request: Request) -> str:
        raise ForwardError("no", code=2, detail="Connection refused")

    result, reply = _drive(SOCKS5_CONNECT, connect)
    assert isinstance(result, ForwardError)
    assert reply == b"\x05\x00" + b"\x05\x05\x00\x01" + bytes(6)


def test_negotiate_refuses_a_bad_handshake_without_connecting() -> None:
    def connect(request: Request) -> str:
        raise AssertionError("must not connect")

    result, reply = _drive(b"\x05\x01\x02", connect)  # offers only user/password
    assert isinstance(result, SocksError)
    assert reply == b"\x05\xff"
    result, reply = _drive(b"\x05\x01", connect)  # closes mid-greeting
    assert isinstance(result, SocksError) and "closed" in str(result)
    assert reply == b""


def test_remote_refusals_name_the_place_and_the_likely_causes() -> None:
    assert RemoteListener("", 8080).text == "*:8080"
    assert RemoteListener("::1", 8080).text == "[::1]:8080"
    assert RemoteListener("/run/x.sock", None).text == "/run/x.sock"
    tcp = _refusal("localhost", 80)
    assert "localhost:80" in tcp and "below 1024" in tcp and "PermitListen" in tcp
    assert "below 1024" not in _refusal("localhost", 8080)
    assert "StreamLocalBindUnlink" in _refusal("/run/x.sock", None)
