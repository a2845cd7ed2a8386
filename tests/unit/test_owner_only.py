"""Who owns the other end of a loopback connection (nbtunnel/platform/peers.py)
and what OwnerOnly makes of it (nbtunnel/forward/owner.py), on real sockets.

Another user's connections are refused in
tests/integration/test_owner_only.py (a second Unix user, the rig's sshd);
here this process's own connections, the policy's cases and its error paths.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest
from nbtunnel import ForwardError, SpecError, parse
from nbtunnel.forward.owner import OwnerOnly
from nbtunnel.platform import peers
from nbtunnel.settings.resolve import resolve

knows = pytest.mark.skipif(
    peers.why_unknown() is not None,
    reason=f"this system cannot tell who connects: {peers.why_unknown()}",
)


@contextlib.contextmanager
def _pair(host: str) -> Iterator[tuple[socket.socket, socket.socket]]:
    """(client, accepted): a loopback connection of this process's own."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        server = socket.create_server((host, 0), family=family)
    except OSError as exc:
        pytest.skip(f"no {host} here: {exc}")
    with server:
        client = socket.create_connection(server.getsockname()[:2], timeout=5)
        accepted, _ = server.accept()
        with client, accepted:
            yield client, accepted


@pytest.fixture(params=["127.0.0.1", "::1", "127.0.0.2"])
def pair(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[socket.socket, socket.socket]]:
    with _pair(request.param) as both:
        yield both


@knows
def test_our_own_connections_are_ours(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    _, accepted = pair
    assert peers.peer_uid(accepted) == peers.my_uid()


@knows
def test_the_kernel_and_proc_agree(pair: tuple[socket.socket, socket.socket]) -> None:
    # Both ways of asking find the same entry (where both exist).
    _, accepted = pair
    ends = peers._ends(accepted)
    try:
        by_proc = peers._proc(*ends)
    except peers.Unknowable:
        pytest.skip("no /proc/net/tcp here")
    assert by_proc is not None and by_proc[0] == 1  # ESTABLISHED
    assert peers._owner(by_proc) == peers.my_uid()
    # Where there is no sock_diag, /proc is what is used.
    with contextlib.suppress(peers.Unknowable, AttributeError):
        assert peers._netlink(*ends) == by_proc  # state, uid, inode alike


@knows
def test_a_connection_nobody_has_is_none() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
    ends = ((socket.AF_INET, "127.0.0.1", 1), (socket.AF_INET, "127.0.0.1", port))
    assert peers._proc(*ends) is None
    with contextlib.suppress(peers.Unknowable, AttributeError):
        assert peers._netlink(*ends) is None


def test_loopback_addresses() -> None:
    for host in ("127.0.0.1", "127.3.4.5", "::1", "localhost", "::ffff:127.0.0.1"):
        assert peers.is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.1.2.3", "fd00::1", "example.org", ""):
        assert not peers.is_loopback(host), host


@pytest.mark.parametrize(
    ("mode", "addresses", "on"),
    [
        ("auto", ("127.0.0.1", "::1"), True),
        ("auto", ("127.0.0.1",), True),
        ("auto", ("0.0.0.0", "::"), False),  # -g: others are meant to connect
        ("auto", ("127.0.0.1", "10.0.0.5"), False),
        ("yes", ("0.0.0.0",), True),
        ("yes", ("::1",), True),
        ("no", ("127.0.0.1",), False),
        ("yes", None, False),  # a unix socket: its mode 0600 does it
    ],
)
@knows
def test_where_it_is_on(mode: str, addresses: tuple[str, ...] | None, on: bool) -> None:
    owner = OwnerOnly(mode, addresses)  # type: ignore[arg-type]
    assert (owner.on, owner.note) == (on, None)


@pytest.mark.parametrize(
    ("entry", "owner"),
    [
        ((1, 1000, 4242), 1000),  # established, held by a process of uid 1000
        ((1, 0, 4242), 0),  # root's, held
        ((4, 1000, 0), 1000),  # closed by its process, unsent data: still its
        ((5, 0, 0), None),  # a time-wait stub (FIN_WAIT2): nobody's, not root's
        ((6, 0, 0), None),  # TIME_WAIT
        ((10, 1000, 4242), None),  # a listener found in its place: not a client
        ((12, 1000, 0), None),
        (None, None),
    ],
)
def test_what_the_kernel_says_is_whose(
    entry: tuple[int, int, int] | None, owner: int | None
) -> None:
    assert peers._owner(entry) == owner


@knows
def test_our_own_connection_is_admitted(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    _, accepted = pair
    owner = OwnerOnly("auto", ("127.0.0.1", "::1", "127.0.0.2"))
    assert owner.refuses(accepted, accepted.getpeername()[0]) is None


@knows
def test_a_peer_with_no_end_here_is_another_host_or_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every connection is looked up, whatever its address (a local user can
    # connect from this machine's LAN address); one with no end on this
    # machine came from another host (a wide bind), or is gone.
    with _pair("127.0.0.1") as (_, accepted):
        owner = OwnerOnly("yes", ("0.0.0.0",))
        assert owner.refuses(accepted, "10.1.2.3") is None  # ours, whatever it says
        monkeypatch.setattr(peers, "peer_uid", lambda sock: None)
        assert owner.refuses(accepted, "10.1.2.3") == (
            "refused a connection from 10.1.2.3: OwnerOnly admits only this "
            "user's connections from this machine"
        )
        assert owner.refuses(accepted, "127.0.0.1") == ""  # gone: not counted


def test_where_nothing_says_who_connects_it_is_off_and_said(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(peers, "why_unknown", lambda: "no such thing here")
    owner = OwnerOnly("auto", ("127.0.0.1",))
    assert not owner.on
    assert owner.note == (
        "any user of this machine can connect here: no such thing here "
        "(OwnerOnly cannot check who connects)"
    )
    assert OwnerOnly("auto", ("0.0.0.0",)).note is None  # not asked for there
    # Asked for explicitly, it cannot be kept: the forward does not start.
    with pytest.raises(ForwardError) as caught:
        OwnerOnly("yes", ("0.0.0.0",))
    assert str(caught.value) == (
        "OwnerOnly=yes cannot be kept here: no such thing here; use -o "
        "OwnerOnly=no, or listen on a unix socket (mode 0600)"
    )


@knows
def test_a_lookup_that_fails_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Not knowing who connected must not let them in.
    def fails(sock: socket.socket) -> int | None:
        raise peers.Unknowable(24, "sock_diag: Too many open files")

    with _pair("127.0.0.1") as (_, accepted):
        owner = OwnerOnly("auto", ("127.0.0.1",))
        monkeypatch.setattr(peers, "peer_uid", fails)
        why = owner.refuses(accepted, "127.0.0.1")
    assert why is not None
    assert why.startswith("refused a connection: cannot tell which user made it")
    assert "Too many open files" in why


def test_user_names() -> None:
    uid = peers.my_uid()
    if uid is None:
        pytest.skip("no user ids here")
    assert peers.user_name(uid).endswith(f"(uid {uid})")
    assert peers.user_name(2**31 - 7) == f"uid {2**31 - 7}"


@pytest.mark.parametrize(
    ("words", "mode"),
    [
        ((), "auto"),
        (("-o", "OwnerOnly=no"), "no"),
        (("-o", "ownerOnly=YES"), "yes"),
        (("-o", "OwnerOnly=auto"), "auto"),
    ],
)
def test_the_option(words: tuple[str, ...], mode: str) -> None:
    line = " ".join(["-F", "none", *words, "-L", "1:h:2", "host"])
    assert resolve(parse(line), home="/nonexistent").owner_only == mode


def test_a_bad_value_is_one_line() -> None:
    with pytest.raises(SpecError) as caught:
        parse("-o OwnerOnly=maybe -L 1:h:2 host")
    assert (
        str(caught.value)
        == "option 'OwnerOnly' does not take 'maybe': use one of yes, no, auto"
    )
