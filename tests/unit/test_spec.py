"""The ssh command-line grammar: tables of good and bad input, and round trips."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nbtunnel.errors import SpecError
from nbtunnel.grammar.destinations import Destination, parse_destination
from nbtunnel.grammar.flags import ACCEPTED_FORMS, SUPPORTED_OPTIONS
from nbtunnel.grammar.forwards import ForwardSpec, parse_forward
from nbtunnel.grammar.spec import TunnelSpec, parse

from tests.strategies import destinations, forward_specs, tunnel_specs

T = TypeVar("T")
F = ForwardSpec
D = Destination
HOST = D("host")

# (flag, argument, expected spec, canonical text)
VALID_FORWARDS = [
    ("-L", "9000:db:5432", F("local", None, 9000, None, "db", 5432), "9000:db:5432"),
    (
        "-L",
        "127.0.0.1:9000:db:5432",
        F("local", "127.0.0.1", 9000, None, "db", 5432),
        "127.0.0.1:9000:db:5432",
    ),
    (
        "-L",
        "localhost:9000:db:5432",
        F("local", "localhost", 9000, None, "db", 5432),
        "localhost:9000:db:5432",
    ),
    ("-L", "*:9000:db:5432", F("local", "*", 9000, None, "db", 5432), "*:9000:db:5432"),
    ("-L", ":9000:db:5432", F("local", "*", 9000, None, "db", 5432), "*:9000:db:5432"),
    ("-L", "0:db:5432", F("local", None, 0, None, "db", 5432), "0:db:5432"),
    (
        "-L",
        "[::1]:0:[fe80::1]:80",
        F("local", "::1", 0, None, "fe80::1", 80),
        "[::1]:0:[fe80::1]:80",
    ),
    (
        "-L",
        "[::]:8080:[2001:db8::5]:443",
        F("local", "::", 8080, None, "2001:db8::5", 443),
        "[::]:8080:[2001:db8::5]:443",
    ),
    (
        "-L",
        "9000:[fe80::1%eth0]:22",
        F("local", None, 9000, None, "fe80::1%eth0", 22),
        "9000:[fe80::1%eth0]:22",
    ),
    (
        "-L",
        "9000:/run/pg.sock",
        F("local", None, 9000, target_path="/run/pg.sock"),
        "9000:/run/pg.sock",
    ),
    (
        "-L",
        "127.0.0.1:9000:/run/pg.sock",
        F("local", "127.0.0.1", 9000, target_path="/run/pg.sock"),
        "127.0.0.1:9000:/run/pg.sock",
    ),
    (
        "-L",
        "/tmp/local.sock:db:5432",
        F("local", listen_path="/tmp/local.sock", target_host="db", target_port=5432),
        "/tmp/local.sock:db:5432",
    ),
    (
        "-L",
        "/tmp/a.sock:/run/b.sock",
        F("local", listen_path="/tmp/a.sock", target_path="/run/b.sock"),
        "/tmp/a.sock:/run/b.sock",
    ),
    (
        "-L",
        "9000:run/x.sock",
        F("local", None, 9000, target_path="run/x.sock"),
        "9000:run/x.sock",
    ),
    (
        "-L",
        "[/tmp/odd:name.sock]:db:5432",
        F(
            "local",
            listen_path="/tmp/odd:name.sock",
            target_host="db",
            target_port=5432,
        ),
        "[/tmp/odd:name.sock]:db:5432",
    ),
    (
        "-L",
        r"/tmp/a\:b.sock:db:1",
        F("local", listen_path="/tmp/a:b.sock", target_host="db", target_port=1),
        "[/tmp/a:b.sock]:db:1",
    ),
    (
        "-L",
        r"/a\]b\:c:/x",
        F("local", listen_path="/a]b:c", target_path="/x"),
        r"/a]b\:c:/x",
    ),
    (
        "-L",
        "9000:DB.Example.com:5432",
        F("local", None, 9000, None, "DB.Example.com", 5432),
        "9000:DB.Example.com:5432",
    ),
    ("-L", "09000:db:005432", F("local", None, 9000, None, "db", 5432), "9000:db:5432"),
    (
        "-L",
        "[db]:9000:[web]:80",
        F("local", "db", 9000, None, "web", 80),
        "db:9000:web:80",
    ),
    ("-L", r"9000:d\b:80", F("local", None, 9000, None, "db", 80), "9000:db:80"),
    ("-L", "65535:h:65535", F("local", None, 65535, None, "h", 65535), "65535:h:65535"),
    (
        "-R",
        "8080:localhost:80",
        F("remote", None, 8080, None, "localhost", 80),
        "8080:localhost:80",
    ),
    (
        "-R",
        "0.0.0.0:8080:localhost:80",
        F("remote", "0.0.0.0", 8080, None, "localhost", 80),
        "0.0.0.0:8080:localhost:80",
    ),
    (
        "-R",
        "8080:/run/app.sock",
        F("remote", None, 8080, target_path="/run/app.sock"),
        "8080:/run/app.sock",
    ),
    (
        "-R",
        "/run/remote.sock:localhost:80",
        F(
            "remote",
            listen_path="/run/remote.sock",
            target_host="localhost",
            target_port=80,
        ),
        "/run/remote.sock:localhost:80",
    ),
    (
        "-R",
        "/run/remote.sock:/run/local.sock",
        F("remote", listen_path="/run/remote.sock", target_path="/run/local.sock"),
        "/run/remote.sock:/run/local.sock",
    ),
    ("-R", "8080", F("remote", None, 8080), "8080"),
    ("-R", "0", F("remote", None, 0), "0"),
    ("-R", "*:8080", F("remote", "*", 8080), "*:8080"),
    ("-R", ":8080", F("remote", "*", 8080), "*:8080"),
    ("-R", "[::1]:0", F("remote", "::1", 0), "[::1]:0"),
    ("-D", "1080", F("dynamic", None, 1080), "1080"),
    ("-D", "0", F("dynamic", None, 0), "0"),
    ("-D", "localhost:1080", F("dynamic", "localhost", 1080), "localhost:1080"),
    ("-D", "*:1080", F("dynamic", "*", 1080), "*:1080"),
    ("-D", ":1080", F("dynamic", "*", 1080), "*:1080"),
    ("-D", "[::1]:1080", F("dynamic", "::1", 1080), "[::1]:1080"),
]

# (text, expected destination, canonical text)
VALID_DESTINATIONS = [
    ("host", D("host"), "host"),
    ("user@host", D("host", "user"), "user@host"),
    ("user@host:2222", D("host", "user", 2222), "ssh://user@host:2222"),
    ("host:22", D("host", None, 22), "ssh://host:22"),
    ("[::1]", D("::1"), "::1"),
    ("::1", D("::1"), "::1"),
    ("user@[::1]:2222", D("::1", "user", 2222), "ssh://user@[::1]:2222"),
    ("fe80::1%eth0", D("fe80::1%eth0"), "fe80::1%eth0"),
    ("ssh://host", D("host"), "host"),
    ("ssh://host/", D("host"), "host"),
    ("ssh://user@host:2222", D("host", "user", 2222), "ssh://user@host:2222"),
    ("ssh://u@[2001:db8::1]:22", D("2001:db8::1", "u", 22), "ssh://u@[2001:db8::1]:22"),
    ("me@corp.com@bastion", D("bastion", "me@corp.com"), "me@corp.com@bastion"),
    ("my-alias_2", D("my-alias_2"), "my-alias_2"),
    ("192.168.1.10", D("192.168.1.10"), "192.168.1.10"),
    ("User@Host.Example.COM", D("Host.Example.COM", "User"), "User@Host.Example.COM"),
    ("1.2.3.4:0022", D("1.2.3.4", None, 22), "ssh://1.2.3.4:22"),
]

# (line, expected spec, canonical text)
VALID_LINES: list[tuple[str | list[str], TunnelSpec, str]] = [
    (
        "ssh -nNT -L 9000:imgur.com:80 user@example.com",
        TunnelSpec(
            D("example.com", "user"), (F("local", None, 9000, None, "imgur.com", 80),)
        ),
        "-L 9000:imgur.com:80 user@example.com",
    ),
    (
        "-L 0:db.internal:5432 -J bastion analyst@warehouse",
        TunnelSpec(
            D("warehouse", "analyst"),
            (F("local", None, 0, None, "db.internal", 5432),),
            jump=(D("bastion"),),
        ),
        "-J bastion -L 0:db.internal:5432 analyst@warehouse",
    ),
    (
        "-NL 9000:db:5432 host",
        TunnelSpec(HOST, (F("local", None, 9000, None, "db", 5432),)),
        "-L 9000:db:5432 host",
    ),
    (
        "-NL9000:db:5432 host",
        TunnelSpec(HOST, (F("local", None, 9000, None, "db", 5432),)),
        "-L 9000:db:5432 host",
    ),
    (
        "-p2222 -lbob host",
        TunnelSpec(HOST, port=2222, login="bob"),
        "-p 2222 -l bob host",
    ),
    (
        "host -L 9000:db:5432 -p 2222",
        TunnelSpec(HOST, (F("local", None, 9000, None, "db", 5432),), port=2222),
        "-p 2222 -L 9000:db:5432 host",
    ),
    (
        "-R 80:localhost:80 -R 8000:localhost:8000 serveo.net",
        TunnelSpec(
            D("serveo.net"),
            (
                F("remote", None, 80, None, "localhost", 80),
                F("remote", None, 8000, None, "localhost", 8000),
            ),
        ),
        "-R 80:localhost:80 -R 8000:localhost:8000 serveo.net",
    ),
    (
        "-vvv -C -g -4 host",
        TunnelSpec(
            HOST, verbose=3, compression=True, gateway_ports=True, address_family="inet"
        ),
        "-4 -C -g -vvv host",
    ),
    ("-4 -6 host", TunnelSpec(HOST, address_family="inet6"), "-6 host"),
    ("-v -v host", TunnelSpec(HOST, verbose=2), "-vv host"),
    (
        "-i ~/.ssh/id_ed25519 -i '/keys/my key' host",
        TunnelSpec(HOST, identities=("~/.ssh/id_ed25519", "/keys/my key")),
        "-i '~/.ssh/id_ed25519' -i '/keys/my key' host",
    ),
    (
        "-F none -c aes128-gcm@openssh.com,aes256-ctr host",
        TunnelSpec(
            HOST, config_file="none", ciphers=("aes128-gcm@openssh.com", "aes256-ctr")
        ),
        "-F none -c aes128-gcm@openssh.com,aes256-ctr host",
    ),
    (
        "-J a,b@c:2200,ssh://d@[::1]:22 host",
        TunnelSpec(HOST, jump=(D("a"), D("c", "b", 2200), D("::1", "d", 22))),
        "-J 'a,ssh://b@c:2200,ssh://d@[::1]:22' host",
    ),
    ("-J none host", TunnelSpec(HOST, jump_none=True), "-J none host"),
    ("-o ProxyJump=jump host", TunnelSpec(HOST, jump=(D("jump"),)), "-J jump host"),
    ("-o proxyjump=NONE host", TunnelSpec(HOST, jump_none=True), "-J none host"),
    ("-J a -o ProxyJump=b host", TunnelSpec(HOST, jump=(D("a"),)), "-J a host"),
    (
        "-o StrictHostKeyChecking=No -o 'ServerAliveInterval 30' "
        "-o 'ConnectTimeout = 010' host",
        TunnelSpec(
            HOST,
            options=(
                ("StrictHostKeyChecking", "no"),
                ("ServerAliveInterval", "30"),
                ("ConnectTimeout", "10"),
            ),
        ),
        "-o StrictHostKeyChecking=no -o ServerAliveInterval=30 "
        "-o ConnectTimeout=10 host",
    ),
    (
        "-oUser=alice -ostricthostkeychecking=accept-new host",
        TunnelSpec(
            HOST, options=(("User", "alice"), ("StrictHostKeyChecking", "accept-new"))
        ),
        "-o User=alice -o StrictHostKeyChecking=accept-new host",
    ),
    (
        "-o LocalForward='9000 db:5432' -L 1:a:2 host",
        TunnelSpec(
            HOST,
            (
                F("local", None, 9000, None, "db", 5432),
                F("local", None, 1, None, "a", 2),
            ),
        ),
        "-L 9000:db:5432 -L 1:a:2 host",
    ),
    (
        "-o 'RemoteForward [::1]:8080 localhost:80' -o DynamicForward=1080 host",
        TunnelSpec(
            HOST,
            (F("remote", "::1", 8080, None, "localhost", 80), F("dynamic", None, 1080)),
        ),
        "-R '[::1]:8080:localhost:80' -D 1080 host",
    ),
    (
        "-o LocalForward=9000:db:5432 host",
        TunnelSpec(HOST, (F("local", None, 9000, None, "db", 5432),)),
        "-L 9000:db:5432 host",
    ),
    (
        "-o Port=2200 -o port=2201 host",
        TunnelSpec(HOST, options=(("Port", "2200"), ("Port", "2201"))),
        "-o Port=2200 -o Port=2201 host",
    ),
    (
        "-o loglevel=debug3 -o compression=YES -o AddressFamily=INET6 host",
        TunnelSpec(
            HOST,
            options=(
                ("LogLevel", "DEBUG3"),
                ("Compression", "yes"),
                ("AddressFamily", "inet6"),
            ),
        ),
        "-o LogLevel=DEBUG3 -o Compression=yes -o AddressFamily=inet6 host",
    ),
    (
        "-o 'UserKnownHostsFile /tmp/known hosts' -o Reconnect=no host",
        TunnelSpec(
            HOST,
            options=(("UserKnownHostsFile", "/tmp/known hosts"), ("Reconnect", "no")),
        ),
        "-o 'UserKnownHostsFile=/tmp/known hosts' -o Reconnect=no host",
    ),
    ("-- host", TunnelSpec(HOST), "host"),
    (
        ["ssh", "-L", "9000:db:5432", "host"],
        TunnelSpec(HOST, (F("local", None, 9000, None, "db", 5432),)),
        "-L 9000:db:5432 host",
    ),
    ("ssh ssh", TunnelSpec(D("ssh")), "ssh"),
    ("ssh", TunnelSpec(D("ssh")), "ssh"),
    ("-T -f -n -N host", TunnelSpec(HOST), "host"),
    (
        "-g -R :8080:localhost:80 ssh://u@[::1]:2222",
        TunnelSpec(
            D("::1", "u", 2222),
            (F("remote", "*", 8080, None, "localhost", 80),),
            gateway_ports=True,
        ),
        "-g -R '*:8080:localhost:80' 'ssh://u@[::1]:2222'",
    ),
    (
        "-L '[::1]:9000:[::1]:5432' ::1",
        TunnelSpec(D("::1"), (F("local", "::1", 9000, None, "::1", 5432),)),
        "-L '[::1]:9000:[::1]:5432' ::1",
    ),
    (
        "-D 1080 -C host -v",
        TunnelSpec(HOST, (F("dynamic", None, 1080),), compression=True, verbose=1),
        "-C -v -D 1080 host",
    ),
    (
        "-p 22 -p 23 -l a -l b -F x -F y -c aes128-ctr -c aes256-ctr host",
        TunnelSpec(HOST, port=22, login="a", config_file="y", ciphers=("aes256-ctr",)),
        "-p 22 -l a -F y -c aes256-ctr host",
    ),
]

# (flag, argument, the part to blame)
BAD_FORWARDS = [
    ("-L", "9000:db", "9000:db"),
    ("-L", "9000", "9000"),
    ("-L", "/tmp/x.sock", "/tmp/x.sock"),
    ("-L", "abc:db:5432", "abc"),
    ("-L", "70000:db:5432", "70000"),
    ("-L", "-1:db:5432", "-1"),
    ("-L", "9000:db:0", "0"),
    ("-L", "9000:db:http", "http"),
    ("-L", "9000:db:+80", "+80"),
    ("-L", "9000:db:\u0663", "\u0663"),
    ("-L", "9000:db:", "9000:db:"),
    ("-L", ":db:5432", ":db:5432"),
    ("-L", "9000::5432", "9000::5432"),
    ("-L", "[::1:9000:db:1", "[::1:9000:db:1"),
    ("-L", "9000:[::1:80", "[::1:80"),
    ("-L", "[::1]x:9000:db:1", "[::1]x"),
    ("-L", "1:2:3:4:5", "1:2:3:4:5"),
    ("-L", "9000:d b:5432", "9000:d b:5432"),
    ("-L", "9000:db:5432\n", "9000:db:5432\n"),
    ("-L", "", ""),
    ("-L", "9000:a@b:80", "a@b"),
    ("-L", "b!d:9000:db:1", "b!d"),
    ("-L", "9000:[nothex::zz]:80", "nothex::zz"),
    ("-L", "999.1.1.1:9000:db:1", "999.1.1.1"),
    ("-L", "9000:db:5432\\", "9000:db:5432\\"),
    ("-L", "/a:80:db:1", "/a"),
    ("-R", "/tmp/remote.sock", "/tmp/remote.sock"),
    ("-R", "8080:db:99999", "99999"),
    ("-D", "1080:db:80", "1080:db:80"),
    ("-D", "/tmp/socks.sock", "/tmp/socks.sock"),
    ("-D", "abc", "abc"),
    ("-D", "65536", "65536"),
    ("-X", "1:a:2", "-X"),
]

# (text, the part to blame)
BAD_DESTINATIONS = [
    ("", ""),
    ("@host", "@host"),
    ("user@", "user@"),
    ("host:", "host:"),
    ("host:abc", "abc"),
    ("host:0", "0"),
    ("host:70000", "70000"),
    ("ssh://h/x", "/x"),
    ("ssh://", "ssh://"),
    ("[::1", "[::1"),
    ("[::1]x", "x"),
    ("a:b:c", "a:b:c"),
    ("-host", "-host"),
    ("ho st", "ho st"),
    ("a,b", "a,b"),
    ("us/er@h", "us/er"),
    ("host]", "host]"),
]

# (line, the part to blame)
BAD_LINES: list[tuple[str | list[str], str]] = [
    ("-L 9000:db:5432", "-L 9000:db:5432"),
    ("", ""),
    ("host ls -la", "ls -la"),
    ("host -L 1:a:2 uptime", "uptime"),
    ("-R 80:localhost:80 8000:localhost:8000 serveo.net", "8000:localhost:8000"),
    ("-L 80:a:80 host 8000:localhost:8000", "8000:localhost:8000"),
    ("-X host", "-X"),
    ("-NX host", "-X"),
    ("-Z host", "-Z"),
    ("--foo host", "--foo"),
    ("host -L", "-L"),
    ("-p", "-p"),
    ("-p 0 host", "0"),
    ("-p abc host", "abc"),
    (["-l", "", "host"], ""),
    ("-l -x host", "-x"),
    ("-o Password=hunter2 host", "Password"),
    ("-o 'Passphrase secret' host", "Passphrase"),
    ("-o Foo=bar host", "Foo"),
    ("-o StrictHostKeyChecking=maybe host", "maybe"),
    ("-o Port=0 host", "0"),
    ("-o ServerAliveInterval=-5 host", "-5"),
    ("-o ExitOnForwardFailure=sure host", "sure"),
    ("-o AddressFamily=ipx host", "ipx"),
    ("-o LocalForward='9000 db' host", "9000:db"),
    ("-o 'LocalForward 1 2 3' host", "1 2 3"),
    ("-o DynamicForward=abc host", "abc"),
    ("-o Port host", "Port"),
    ("-o =x host", "=x"),
    ("-o Port= host", "Port"),
    ("-o User=-x host", "-x"),
    ("-o HostName=a@b host", "a@b"),
    ("-o ProxyJump=a,,b host", "a,,b"),
    ("-J a,,b host", "a,,b"),
    ("-J a,none host", "none"),
    ("-J a -J b host", "b"),
    ("-J user@ host", "user@"),
    ("-c 'aes 128' host", "aes 128"),
    ("-c a,,b host", "a,,b"),
    (["-F", "", "host"], ""),
    (["-i", "", "host"], ""),
    ("'unbalanced host", "'unbalanced host"),
    ("-L 9000:db host", "9000:db"),
    ("-D 1080:db:80 host", "1080:db:80"),
]


def _raises(line: str | Sequence[str]) -> SpecError:
    start = time.perf_counter()
    with pytest.raises(SpecError) as info:
        parse(line)
    assert time.perf_counter() - start < 0.25
    return info.value


@pytest.mark.parametrize(("flag", "text", "expected", "canonical"), VALID_FORWARDS)
def test_valid_forward(
    flag: str, text: str, expected: ForwardSpec, canonical: str
) -> None:
    forward = parse_forward(flag, text)
    assert forward == expected
    assert forward.text == canonical
    assert str(forward) == f"{flag} {canonical}"
    assert forward.flag == flag
    assert parse_forward(flag, canonical) == forward
    # The same forward inside a whole line, given as argv.
    assert parse([flag, text, "host"]).forwards == (expected,)


@pytest.mark.parametrize(("text", "expected", "canonical"), VALID_DESTINATIONS)
def test_valid_destination(text: str, expected: Destination, canonical: str) -> None:
    destination = parse_destination(text)
    assert destination == expected
    assert destination.text == canonical == str(destination)
    assert parse(["-N", text]).destination == expected


@pytest.mark.parametrize(("line", "expected", "canonical"), VALID_LINES)
def test_valid_line(
    line: str | list[str], expected: TunnelSpec, canonical: str
) -> None:
    spec = parse(line)
    assert spec == expected
    assert spec.text == canonical == str(spec)
    assert parse(canonical) == spec


@pytest.mark.parametrize(("flag", "text", "bad"), BAD_FORWARDS)
def test_bad_forward(flag: str, text: str, bad: str) -> None:
    start = time.perf_counter()
    with pytest.raises(SpecError) as info:
        parse_forward(flag, text)
    assert time.perf_counter() - start < 0.25
    assert info.value.text == bad
    assert f"'{bad}'" in str(info.value)
    if flag in ("-L", "-R", "-D"):
        assert "accepted forms:" in str(info.value)
        for form in ACCEPTED_FORMS[flag]:
            assert f"  {flag} {form}" in str(info.value)


@pytest.mark.parametrize(("text", "bad"), BAD_DESTINATIONS)
def test_bad_destination(text: str, bad: str) -> None:
    start = time.perf_counter()
    with pytest.raises(SpecError) as info:
        parse_destination(text)
    assert time.perf_counter() - start < 0.25
    assert info.value.text == bad
    assert f"'{bad}'" in str(info.value)


@pytest.mark.parametrize(("line", "bad"), BAD_LINES)
def test_bad_line(line: str | list[str], bad: str) -> None:
    error = _raises(line)
    assert error.text == bad
    assert f"'{bad}'" in str(error)
    assert error.reason


def test_forward_error_message_shows_the_accepted_forms() -> None:
    with pytest.raises(SpecError) as info:
        parse_forward("-L", "9000:db")
    assert str(info.value) == (
        "bad -L spec '9000:db': a local forward needs a target\n"
        "accepted forms:\n"
        "  -L [bind_address:]port:host:hostport\n"
        "  -L [bind_address:]port:remote_socket\n"
        "  -L local_socket:host:hostport\n"
        "  -L local_socket:remote_socket"
    )
    assert info.value.reason == "a local forward needs a target"


def test_bad_port_names_the_field() -> None:
    with pytest.raises(SpecError) as info:
        parse_forward("-L", "abc:db:5432")
    first = str(info.value).splitlines()[0]
    assert first == "port 'abc' in '-L abc:db:5432' is not a number from 0 to 65535"


@pytest.mark.parametrize(
    ("line", "hint"),
    [
        (
            "-R 80:localhost:80 8000:localhost:8000 serveo.net",
            "did you mean '-R 8000:localhost:8000'?",
        ),
        ("8000:localhost:8000 host", "did you mean '-L 8000:localhost:8000'?"),
        ("-D 1080 8000:db:80 host", "did you mean '-L 8000:db:80'?"),
        ("-L 1:a:2 host 3:b:4", "did you mean '-L 3:b:4'?"),
        ("-R 1:a:2 host 9000:/run/x.sock", "did you mean '-R 9000:/run/x.sock'?"),
    ],
)
def test_a_spec_without_its_flag_gets_a_hint(line: str, hint: str) -> None:
    assert hint in str(_raises(line))


def test_a_remote_command_is_refused() -> None:
    assert str(_raises("host ls -la")) == "nbtunnel runs no remote command: 'ls -la'"


@pytest.mark.parametrize("key", ["Password", "Passphrase", "password", "KeyPassphrase"])
def test_secret_options_are_refused_without_echoing_the_secret(key: str) -> None:
    for line in (f"-o {key}=hunter2 host", f"-o '{key} hunter2' host"):
        error = _raises(line)
        assert "hunter2" not in str(error)
        assert "never put secrets on the command line" in str(error)
        assert error.text == key


def test_password_authentication_is_not_a_secret() -> None:
    spec = parse("-o PasswordAuthentication=no host")
    assert spec.option("passwordauthentication") == "no"


@pytest.mark.parametrize(
    ("flag", "reason"),
    [
        ("-X", "X11 forwarding"),
        ("-Y", "X11 forwarding"),
        ("-A", "agent forwarding"),
        ("-W", "stdio forwarding; use -L"),
        ("-M", "connection sharing is automatic"),
        ("-S", "connection sharing is automatic"),
        ("-O", "connection sharing is automatic"),
        *((f"-{c}", "") for c in "aBbEeGIKkmPQqstVwxy12"),
    ],
)
def test_unsupported_flags_are_named(flag: str, reason: str) -> None:
    error = _raises(f"{flag} host")
    assert str(error).startswith(f"nbtunnel does not support '{flag}' (")
    assert reason in str(error)
    assert error.text == flag


@pytest.mark.parametrize("flag", sorted(ACCEPTED_FORMS))
def test_a_flag_without_its_argument(flag: str) -> None:
    error = _raises(f"host {flag}")
    assert str(error).startswith(f"option '{flag}' needs an argument\n")
    for form in ACCEPTED_FORMS[flag]:
        assert f"  {flag} {form}" in str(error)


def test_an_unknown_option_key_says_where_the_keys_are_listed() -> None:
    # Nothing close to guess: where the list is, not the 36 names.
    error = _raises("-o Tunel=yes host")
    assert str(error) == (
        "-o 'Tunel': no such option (ssh has Tunnel, which nbtunnel does not "
        "support yet); the supported ones: nbtunnel --help (%tunnel? in a notebook)"
    )
    assert sum(key in str(error) for key in SUPPORTED_OPTIONS) == 0


def test_a_missing_destination_shows_the_usage() -> None:
    error = _raises("-L 9000:db:5432")
    assert "no destination" in str(error)
    assert "usage:" in str(error)


def test_supported_options_cover_the_design() -> None:
    for key in [
        "StrictHostKeyChecking",
        "UserKnownHostsFile",
        "ServerAliveInterval",
        "ServerAliveCountMax",
        "ConnectTimeout",
        "ExitOnForwardFailure",
        "IdentitiesOnly",
        "IdentityFile",
        "Port",
        "User",
        "ProxyJump",
        "GatewayPorts",
        "PasswordAuthentication",
    ]:
        assert key in SUPPORTED_OPTIONS
    assert len(set(SUPPORTED_OPTIONS)) == len(SUPPORTED_OPTIONS)


def test_option_lookup_is_case_insensitive_and_the_first_wins() -> None:
    spec = parse("-o Port=2200 -o PORT=2201 -o user=bob host")
    assert spec.option("port") == "2200"
    assert spec.option("USER") == "bob"
    assert spec.option("ConnectTimeout") is None


def test_user_and_port_precedence() -> None:
    assert parse("-l a -o User=c b@host").user == "a"
    assert parse("-o User=c b@host").user == "b"
    assert parse("-o User=c host").user == "c"
    assert parse("host").user is None
    assert parse("-p 1 -o Port=3 host:2").effective_port == 1
    assert parse("-o Port=3 host:2").effective_port == 2
    assert parse("-o Port=3 host").effective_port == 3
    assert parse("host").effective_port is None


def test_forward_properties() -> None:
    remote_socks = parse_forward("-R", "8080")
    assert remote_socks.is_dynamic
    assert str(remote_socks) == "-R 8080"
    assert parse_forward("-D", "1080").is_dynamic
    assert not parse_forward("-R", "8080:localhost:80").is_dynamic
    assert not parse_forward("-L", "9000:db:5432").is_dynamic


@settings(max_examples=300, deadline=None)
@given(forward_specs())
def test_forward_round_trip(forward: ForwardSpec) -> None:
    assert parse_forward(forward.flag, forward.text) == forward


@settings(max_examples=300, deadline=None)
@given(destinations)
def test_destination_round_trip(destination: Destination) -> None:
    assert parse_destination(destination.text) == destination


@settings(max_examples=300, deadline=None)
@given(tunnel_specs())
def test_tunnel_round_trip(spec: TunnelSpec) -> None:
    assert parse(spec.text) == spec


_fragments = st.sampled_from(
    [
        *"-LRDopJ :[]\\/@,='\"%",
        "ssh://",
        "0",
        "80",
        "::1",
        "db",
        "none",
        "-nNT",
        "--",
        "LocalForward",
        "Port",
        "ssh",
    ]
)
_texts = st.one_of(st.text(), st.lists(_fragments).map("".join))


@settings(max_examples=300, deadline=None)
@given(st.one_of(_texts, st.lists(_texts, max_size=6)))
def test_any_input_parses_or_raises_spec_error(line: str | list[str]) -> None:
    try:
        spec = parse(line)
    except SpecError as error:
        assert f"'{error.text}'" in str(error)
    else:
        assert parse(spec.text) == spec


# Forward arguments and destinations, from any text and from the pieces their
# grammars are made of, so that many get past the first check.
_forward_fragments = st.sampled_from(
    [*":[]/\\*@%", "0", "80", "65536", "::1", "db", "localhost", "a.sock", "1.2.3.4"]
)
_destination_fragments = st.sampled_from(
    [*":[]/@%.-", "ssh://", "user", "host", "::1", "22", "0", "65536", "fe80::1%eth0"]
)


def _parses_or_names_the_bad_part(parse_it: Callable[[str], T], text: str) -> T | None:
    try:
        return parse_it(text)
    except SpecError as error:
        assert f"'{error.text}'" in str(error)
        return None


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["-L", "-R", "-D", "-X", "L", ""]),
    st.one_of(st.text(), st.lists(_forward_fragments).map("".join)),
)
def test_any_forward_text_parses_or_raises_spec_error(flag: str, text: str) -> None:
    forward = _parses_or_names_the_bad_part(lambda t: parse_forward(flag, t), text)
    if forward is not None:
        assert parse_forward(forward.flag, forward.text) == forward


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.lists(_destination_fragments).map("".join)))
def test_any_destination_text_parses_or_raises_spec_error(text: str) -> None:
    destination = _parses_or_names_the_bad_part(parse_destination, text)
    if destination is not None:
        assert parse_destination(destination.text) == destination
