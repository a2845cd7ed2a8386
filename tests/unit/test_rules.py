"""The manager's rules, as pure functions over snapshots (nbtunnel.client.rules).

The tunnels here stand in for handles with the two things the rules read of
one, its line and its name; the integration tests (tests/integration/
test_rules.py) run the same rules through a real manager and sshd.
"""

from __future__ import annotations

import re
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from nbtunnel import ForwardError, SpecError, parse
from nbtunnel.client import rules
from nbtunnel.grammar.forwards import parse_forward
from nbtunnel.status import TunnelSnapshot

from .snapshots import forward_snapshot


def _tunnel(line: str, name: str, state: str = "up", **forwards: Any) -> Any:
    """A stand-in handle and a snapshot of it, as the manager pairs them."""
    spec = parse(line)
    snaps = tuple(
        replace(forward_snapshot(str(f), "up", **forwards), index=i)
        for i, f in enumerate(spec.forwards)
    )
    snap = TunnelSnapshot(
        id=len(name),
        destination=spec.destination.text,
        state=state,  # type: ignore[arg-type]
        error=None,
        forwards=snaps,
        name=name,
    )
    return SimpleNamespace(spec=spec, name=name), snap


def _fwd(text: str) -> Any:
    flag, rest = text.split(" ", 1)
    return parse_forward(flag, rest)


def test_the_same_line_is_the_open_tunnel_up_or_reconnecting() -> None:
    up = _tunnel("-L 9000:db:5432 u@h", "h")
    assert rules.already_open([up], parse("-L 9000:db:5432 u@h"), None) is up[0]
    assert rules.already_open([up], parse("-L 9000:db:5432 u@h"), "h") is up[0]
    assert rules.already_open([up], parse("-L 9000:db:5432 u@h"), "x") is None
    back = _tunnel("-L 9000:db:5432 u@h", "h", "reconnecting")
    assert rules.already_open([back], parse("-L 9000:db:5432 u@h"), None) is back[0]
    failed = _tunnel("-L 9000:db:5432 u@h", "h", "failed")
    assert rules.already_open([failed], parse("-L 9000:db:5432 u@h"), None) is None


def test_the_same_destination_and_options_join_a_new_name_does_not() -> None:
    db = _tunnel("-L 0:db:5432 u@h", "db")
    assert rules.joined([db], parse("-L 0:web:80 u@h"), None) == db
    assert rules.joined([db], parse("-L 0:web:80 u@h"), "db") == db
    assert rules.joined([db], parse("-L 0:web:80 u@h"), "web") is None
    assert rules.joined([db], parse("-C -L 0:web:80 u@h"), None) is None  # options
    assert rules.joined([db], parse("-L 0:web:80 db"), None) == db  # by its name
    # What it runs already is not asked for twice.
    assert rules.missing(db[1], parse("-L 0:db:5432 -L 0:x:1 u@h").forwards) == (
        _fwd("-L 0:x:1"),
    )


@pytest.mark.parametrize(
    ("held", "wanted", "clash"),
    [
        ("-L 9000:db:5432", "-D 9000", True),  # one side, one port
        ("-L 9000:db:5432", "-R 9000:x:1", False),  # this machine / the server
        ("-L 127.0.0.1:9000:db:5432", "-L [::1]:9000:x:1", False),
        ("-L 127.0.0.1:9000:db:5432", "-L 127.0.0.1:9000:x:1", True),
        ("-L *:9000:db:5432", "-L 127.0.0.1:9000:x:1", True),  # a wildcard
        ("-L 9000:db:5432", "-L 127.0.0.1:9000:x:1", True),  # the default
        ("-L /tmp/a.sock:db:5432", "-L /tmp/a.sock:x:1", True),
        ("-L /tmp/a.sock:db:5432", "-L /tmp/b.sock:x:1", False),
    ],
)
def test_two_forwards_of_one_line_clash_on_a_port_or_socket(
    held: str, wanted: str, clash: bool
) -> None:
    forwards = (_fwd(held), _fwd(wanted))
    if clash:
        with pytest.raises(ForwardError, match="asked for twice"):
            rules.check_ports(forwards, parse("u@h"), [])
    else:
        rules.check_ports(forwards, parse("u@h"), [])


def test_a_held_port_names_the_tunnel_and_how_to_free_it() -> None:
    db = _tunnel("-L 9000:db:5432 u@h", "db", listen_port=9000)
    with pytest.raises(ForwardError) as info:
        rules.check_ports((_fwd("-L 9000:web:80"),), parse("u@other"), [db])
    assert str(info.value) == (
        "port 9000 of '-L 9000:web:80' is held by tunnel 'db' (-L 9000:db:5432); "
        "stop that forward first (%tunnel -KL 9000 in a notebook, or its "
        "Forward.stop()) or pick another port (0 for any free one)"
    )
    # A -R port is the server's: only tunnels on the same connection count.
    remote = _tunnel("-R 8080:localhost:80 u@h", "web", listen_port=8080)
    rules.check_ports((_fwd("-R 8080:x:1"),), parse("u@other"), [remote])
    with pytest.raises(ForwardError, match="held by tunnel 'web'"):
        rules.check_ports((_fwd("-R 8080:x:1"),), parse("u@h"), [remote])


def test_a_failed_tunnel_holds_its_ports_until_stopped() -> None:
    handle, snap = _tunnel("-L 9000:db:5432 u@h", "db", listen_port=9000)
    why = "the server went away"
    failed = replace(
        snap,
        state="failed",
        error=why,
        forwards=tuple(replace(f, state="failed", error=why) for f in snap.forwards),
    )
    with pytest.raises(ForwardError, match=re.escape("%tunnel stop db")):
        rules.check_ports((_fwd("-L 9000:web:80"),), parse("u@h"), [(handle, failed)])
    # A forward that failed alone (its bind, say) holds nothing.
    alone = replace(
        snap,
        forwards=tuple(
            replace(f, state="failed", error="in use") for f in snap.forwards
        ),
    )
    rules.check_ports((_fwd("-L 9000:web:80"),), parse("u@h"), [(handle, alone)])


def test_cancel_finds_the_forward_on_that_port() -> None:
    db = _tunnel("-L 9000:db:5432 -D 1080 u@h", "db", listen_port=9000)
    handle, snap = db
    socks = replace(snap.forwards[1], listen_port=1080, listen_host="127.0.0.1")
    live = [(handle, replace(snap, forwards=(snap.forwards[0], socks)))]
    assert rules.to_cancel(live, "-KD", "1080") == (handle, 1)
    assert rules.to_cancel(live, "-KD", "127.0.0.1:1080") == (handle, 1)
    assert rules.to_cancel(live, "-L", "9000") == (handle, 0)
    with pytest.raises(SpecError, match="no -R forward listens on 9000"):
        rules.to_cancel(live, "-KR", "9000")
    with pytest.raises(SpecError, match="not -KX"):
        rules.to_cancel(live, "-KX", "9000")
    with pytest.raises(SpecError, match="bad -KL 'x:y:z'"):
        rules.to_cancel(live, "-KL", "x:y:z")


KL_USE = "use -KL [bind_address:]port or the path of its unix socket"


@pytest.mark.parametrize(
    ("flag", "listen", "message"),
    [
        (
            "-KL",
            "abc",
            f"bad -KL 'abc': port 'abc' is not a number from 1 to 65535; {KL_USE}",
        ),
        (
            "-KL",
            "127.0.0.1:x",
            f"bad -KL '127.0.0.1:x': port 'x' is not a number from 1 to 65535; {KL_USE}",
        ),
        (
            "-L",
            "9000:db:5432",
            "bad -KL '9000:db:5432': a cancel names where the forward listens, "
            f"not its target; {KL_USE}",
        ),
        ("-KL", "", f"bad -KL '': it is empty; {KL_USE}"),
        ("-KL", "[::1", "bad -KL '[::1': '[::1' opens '[' without a matching ']'"),
        (
            "-KR",
            "0x50",
            "bad -KR '0x50': port '0x50' is not a number from 1 to 65535; "
            "use -KR [bind_address:]port or the path of its unix socket",
        ),
        (
            "-KD",
            "/tmp/x.sock",
            "bad -KD '/tmp/x.sock': a -D forward listens on a port, not a socket; "
            "use -KD [bind_address:]port",
        ),
        ("-KL", "/tmp/none.sock", "no -L forward listens on /tmp/none.sock"),
    ],
)
def test_a_cancel_is_read_as_ssh_reads_k_naming_it(
    flag: str, listen: str, message: str
) -> None:
    # Never "-D spec": what was typed was -KL (or -L, to Manager.cancel).
    live = [_tunnel("-L 9000:db:5432 u@h", "db", listen_port=9000)]
    with pytest.raises(SpecError) as info:
        rules.to_cancel(live, flag, listen)
    assert str(info.value).startswith(message)
    assert "-D spec" not in str(info.value) and "\n" not in str(info.value)


def test_cancel_finds_a_unix_socket_forward_by_its_path() -> None:
    handle, snap = _tunnel(
        "-L /tmp/db.sock:db:5432 -R /srv/web.sock:localhost:80 -L 9000:x:1 u@h",
        "db",
    )
    local, remote, port = snap.forwards
    forwards = (
        replace(local, listen_path="/tmp/db.sock"),
        replace(remote, listen_path="/srv/web.sock"),
        replace(port, listen_port=9000),
    )
    live = [(handle, replace(snap, forwards=forwards))]
    assert rules.to_cancel(live, "-KL", "/tmp/db.sock") == (handle, 0)
    assert rules.to_cancel(live, "-KR", "/srv/web.sock") == (handle, 1)
    assert rules.to_cancel(live, "-KL", "9000") == (handle, 2)
    with pytest.raises(SpecError, match=r"no -R forward listens on /tmp/db\.sock"):
        rules.to_cancel(live, "-KR", "/tmp/db.sock")


def test_labels_are_the_host_made_unique_or_the_name_given() -> None:
    spec = parse("-L 0:db:5432 u@db.example.com")
    assert rules.label(spec, None, set()) == "db"
    assert rules.label(spec, None, {"db", "db-2"}) == "db-3"
    assert rules.label(parse("-D 0 10.0.0.5"), None, set()) == "10.0.0.5"
    assert rules.label(spec, "mine", {"db"}) == "mine"
    with pytest.raises(SpecError, match="a tunnel named 'db' is open already"):
        rules.label(spec, "db", {"db"})
