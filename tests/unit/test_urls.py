"""URL rewriting for -L, proxy mappings for -D, and the address to share a -R at."""

from __future__ import annotations

import pytest
from nbtunnel import ForwardError, TunnelError, UrlError
from nbtunnel.client import urls
from nbtunnel.status import ForwardSnapshot

from .snapshots import forward_snapshot

LOCAL = forward_snapshot(
    "-L 0:db.internal:5432", listen_host="127.0.0.1", listen_port=40000
)


def _local_at(host: str) -> ForwardSnapshot:
    return forward_snapshot("-L 0:db:5432", listen_host=host, listen_port=40000)


def _unix(path: str) -> ForwardSnapshot:
    return forward_snapshot(f"-L {path}:/run/pg/.s.PGSQL.5432", listen_path=path)


def _remote(bind: str | None, spec: str = "-R 0:127.0.0.1:8050", **kw: object):
    return forward_snapshot(spec, listen_host=bind, listen_port=41000, **kw)


# -- url(): host and port replaced, the rest exactly as written --------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            "postgresql://analyst@db.internal:5432/sales",
            "postgresql://analyst@127.0.0.1:40000/sales",
        ),
        # An encoded password, query and fragment come back byte for byte.
        (
            "postgresql+psycopg://u:p%40ss%2Fw@db:5432/sales?sslmode=require&x=%41#frag",
            "postgresql+psycopg://u:p%40ss%2Fw@127.0.0.1:40000/sales?sslmode=require&x=%41#frag",
        ),
        # The last "@" ends the user part: an unencoded "@" stays in the password.
        ("mysql://u:p@ss@db/x", "mysql://u:p@ss@127.0.0.1:40000/x"),
        ("http://[fd00::5]:8080/api?q=1", "http://127.0.0.1:40000/api?q=1"),
        ("http://[fd00::5]/", "http://127.0.0.1:40000/"),
        ("redis://cache", "redis://127.0.0.1:40000"),
        ("redis://cache:6379?db=2", "redis://127.0.0.1:40000?db=2"),
        ("http://h#top", "http://127.0.0.1:40000#top"),
        ("http://h:80?", "http://127.0.0.1:40000?"),
        # No host at all is fine: host and port are set.
        ("postgresql:///sales", "postgresql://127.0.0.1:40000/sales"),
        ("postgresql://analyst@/sales", "postgresql://analyst@127.0.0.1:40000/sales"),
        ("mongodb://u:pw@:27017/db", "mongodb://u:pw@127.0.0.1:40000/db"),
        # libpq would let these override the authority: they go, the rest stays.
        (
            "postgresql:///sales?host=/var/run/postgresql&sslmode=disable&port=5433",
            "postgresql://127.0.0.1:40000/sales?sslmode=disable",
        ),
        ("postgres://db/s?ho%73t=x&hostaddr=10.0.0.1", "postgres://127.0.0.1:40000/s"),
        # ... but only for PostgreSQL: elsewhere host= may mean anything.
        ("http://h/p?host=x&port=1", "http://127.0.0.1:40000/p?host=x&port=1"),
    ],
)
def test_url_replaces_host_and_port_only(template: str, expected: str) -> None:
    assert urls.forward_url(template, LOCAL, "me@gw") == expected


@pytest.mark.parametrize(
    ("bound", "connect"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("0.0.0.0", "127.0.0.1"),
        ("::", "[::1]"),
        ("::1", "[::1]"),
        ("10.1.2.3", "10.1.2.3"),
        ("fd00::7", "[fd00::7]"),
    ],
)
def test_url_connects_where_a_client_here_reaches_the_listener(
    bound: str, connect: str
) -> None:
    got = urls.forward_url("http://dash:8050/", _local_at(bound), "h")
    assert got == f"http://{connect}:40000/"


def test_connect_host() -> None:
    assert urls.connect_host(None) == "127.0.0.1"
    assert urls.connect_host("*") == "127.0.0.1"
    assert urls.connect_host("") == "127.0.0.1"
    assert urls.connect_host("localhost") == "127.0.0.1"
    assert urls.connect_host("::") == "::1"
    assert urls.connect_host("192.0.2.9") == "192.0.2.9"


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("db.internal:5432", "has no scheme:// at the start"),
        ("//db/sales", "has no scheme:// at the start"),
        ("postgresql://h1:5432,h2:5432/db", "names several hosts"),
        ("http://[::1:80/", r"opens '\[' without a closing '\]'"),
        ("http://[::1]x/", "'x' after ']' is not ':port'"),
        ("http://fd00::1:80/", r"goes in brackets, as \[fd00::1:80\]"),
        ("postgresql://u:pa/ss@db/x", "port 'pa' is not a number .*percent-encoded"),
        ("http://h:\uff18\uff10/", "port '\uff18\uff10' is not a number"),
        ("http://h:0/", "port 0 is not from 1 to 65535"),
        ("http://h:65536/", "port 65536 is not from 1 to 65535"),
    ],
)
def test_a_malformed_template_is_named(template: str, says: str) -> None:
    with pytest.raises(UrlError, match=says) as caught:
        urls.forward_url(template, LOCAL, "h")
    assert repr(template) in str(caught.value)
    assert "scheme://[user[:password]@]host[:port]" in str(caught.value)


def test_a_template_must_be_a_string() -> None:
    with pytest.raises(UrlError, match="a URL template is a str, not bytes"):
        urls.forward_url(b"http://h/", LOCAL, "h")  # type: ignore[arg-type]


def test_url_errors_are_of_the_family_and_value_errors() -> None:
    assert issubclass(UrlError, ForwardError)
    assert issubclass(UrlError, TunnelError)
    assert issubclass(UrlError, ValueError)


# -- a -L on a unix socket here --------------------------------------------


def test_a_libpq_named_socket_becomes_host_dir_and_port() -> None:
    f = _unix("/tmp/pg/.s.PGSQL.6543")
    got = urls.forward_url(
        "postgresql://analyst:pw@db:5432/sales?sslmode=disable", f, "h"
    )
    assert (
        got == "postgresql://analyst:pw@/sales?sslmode=disable&host=/tmp/pg&port=6543"
    )
    # An existing host=/port= would override it: replaced, not kept.
    got = urls.forward_url("postgres:///s?host=/x&port=1#f", f, "h")
    assert got == "postgres:///s?host=/tmp/pg&port=6543#f"
    got = urls.forward_url("postgresql+psycopg://u@/s", f, "h")
    assert got == "postgresql+psycopg://u@/s?host=/tmp/pg&port=6543"


def test_a_socket_directory_is_percent_encoded_and_may_be_the_root() -> None:
    f = _unix("/tmp/my pg+1%/.s.PGSQL.5432")
    got = urls.forward_url("postgresql://u@db/s", f, "h")
    assert got == "postgresql://u@/s?host=/tmp/my%20pg%2B1%25&port=5432"
    root = urls.forward_url("postgresql://u@db/s", _unix("/.s.PGSQL.5432"), "h")
    assert root == "postgresql://u@/s?host=/&port=5432"


@pytest.mark.parametrize(
    "path", ["/tmp/db.sock", "/tmp/.s.PGSQL.0", "/tmp/.s.PGSQL.70000", "/tmp/.s.PGSQL."]
)
def test_a_socket_not_named_for_libpq_is_refused(path: str) -> None:
    with pytest.raises(UrlError, match=r"DIRECTORY/\.s\.PGSQL\.PORT") as caught:
        urls.forward_url("postgresql://u@db/s", _unix(path), "h")
    assert path in str(caught.value)


def test_a_unix_socket_cannot_be_named_by_other_schemes() -> None:
    with pytest.raises(UrlError, match=r"a mysql:// URL cannot name; .*-L 0:"):
        urls.forward_url("mysql://u@db/s", _unix("/tmp/.s.PGSQL.5432"), "h")


# -- forwards that have no end here for url() ------------------------------


def test_url_refuses_a_dynamic_forward_pointing_at_proxies() -> None:
    f = forward_snapshot("-D 0", listen_host="127.0.0.1", listen_port=1080)
    with pytest.raises(UrlError, match=r"SOCKS proxy, not one service.*fwd\.proxies"):
        urls.forward_url("http://intranet/", f, "h")


def test_url_refuses_a_remote_forward_saying_where_it_is() -> None:
    with pytest.raises(UrlError, match="listens on the server") as caught:
        urls.forward_url("http://dash:8050/app", _remote("localhost"), "me@gw.example")
    assert "people elsewhere would use http://gw.example:41000/app" in str(caught.value)
    # Down, it has no address to offer.
    with pytest.raises(UrlError, match="listens on the server") as caught:
        urls.forward_url("http://x/", _remote("localhost", state="stopped"), "me@gw")
    assert "people elsewhere" not in str(caught.value)


def test_a_malformed_template_is_reported_before_the_kind() -> None:
    f = forward_snapshot("-D 0", listen_host="127.0.0.1", listen_port=1080)
    with pytest.raises(UrlError, match="no scheme"):
        urls.forward_url("intranet", f, "h")


@pytest.mark.parametrize("state", ["stopped", "failed"])
def test_url_refuses_a_forward_that_ended(state: str) -> None:
    f = forward_snapshot(
        "-L 0:db:5432", state, listen_host="127.0.0.1", listen_port=40000
    )
    with pytest.raises(UrlError, match=f"-L 0:db:5432 is {state}: nothing listens"):
        urls.forward_url("http://h/", f, "h")
    with pytest.raises(UrlError, match=f"is {state}"):
        urls.forward_url("postgresql://u@/s", _unix_in(state), "h")


def _unix_in(state: str) -> ForwardSnapshot:
    return forward_snapshot("-L /t/.s.PGSQL.1:/x", state, listen_path="/t/.s.PGSQL.1")


def test_url_refuses_a_forward_without_a_port_yet() -> None:
    f = forward_snapshot(
        "-L 0:db:5432", "starting", listen_host="127.0.0.1", listen_port=0
    )
    with pytest.raises(UrlError, match=r"has no port yet \(it is starting\)"):
        urls.forward_url("http://h/", f, "h")


# -- proxies -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("bound", "proxy"),
    [
        ("127.0.0.1", "socks5h://127.0.0.1:1080"),
        ("0.0.0.0", "socks5h://127.0.0.1:1080"),
        ("::1", "socks5h://[::1]:1080"),
        ("::", "socks5h://[::1]:1080"),
    ],
)
def test_proxies_for_requests_resolve_names_on_the_server(
    bound: str, proxy: str
) -> None:
    f = forward_snapshot("-D 0", listen_host=bound, listen_port=1080)
    assert urls.proxies(f) == {"http": proxy, "https": proxy}


def test_proxies_refuse_what_is_not_a_local_socks_proxy() -> None:
    with pytest.raises(UrlError, match=r"not a -D SOCKS proxy.*use fwd\.url"):
        urls.proxies(LOCAL)
    remote_socks = forward_snapshot("-R 0", listen_host="localhost", listen_port=9)
    with pytest.raises(UrlError, match="-R listens on the server, for clients there"):
        urls.proxies(remote_socks)
    stopped = forward_snapshot(
        "-D 0", "stopped", listen_host="127.0.0.1", listen_port=1080
    )
    with pytest.raises(UrlError, match="-D 0 is stopped"):
        urls.proxies(stopped)


# -- the address to share a -R at --------------------------------------------


@pytest.mark.parametrize("bound", ["localhost", "127.0.0.1", "::1"])
def test_a_loopback_remote_forward_is_shared_with_the_gatewayports_advice(
    bound: str,
) -> None:
    there = urls.share(_remote(bound), "analyst@gw.example.com")
    assert there is not None
    assert there.url == "http://gw.example.com:41000/"
    assert "only the server itself reaches it" in there.advice
    assert "unless the server's sshd_config has GatewayPorts yes" in there.advice
    assert "set GatewayPorts clientspecified (or yes)" in there.advice
    # The user's own forward, asked for on every IPv4 address.
    assert "-R 0.0.0.0:0:127.0.0.1:8050" in there.advice
    assert "-g widens only -L and -D" in there.advice


@pytest.mark.parametrize("bound", ["", "*", "0.0.0.0", "::", None])
def test_a_wide_remote_forward_is_shared_at_the_destination(bound: str | None) -> None:
    there = urls.share(_remote(bound, spec="-R *:0:127.0.0.1:8050"), "ssh://u@gw:2222")
    assert there is not None
    assert there.url == "http://gw:41000/"
    assert "GatewayPorts" in there.advice and "default no" in there.advice


def test_a_remote_forward_on_one_address_is_shared_at_that_address() -> None:
    spec = "-R 198.51.100.7:0:127.0.0.1:8050"
    there = urls.share(_remote("198.51.100.7", spec=spec), "u@gw")
    assert there is not None and there.url == "http://198.51.100.7:41000/"
    six = urls.share(_remote("2001:db8::7", spec="-R [2001:db8::7]:0:h:80"), "gw")
    assert six is not None and six.url == "http://[2001:db8::7]:41000/"


@pytest.mark.parametrize(
    ("destination", "host"),
    [
        ("gw", "gw"),
        ("analyst@gw.example.com", "gw.example.com"),
        ("ssh://analyst@[2001:db8::1]:2222", "[2001:db8::1]"),
        ("a@b@host", "host"),
        # Not a destination the grammar takes: its text after the last "@".
        ("user@bad host", "bad host"),
    ],
)
def test_the_share_host_is_the_destinations(destination: str, host: str) -> None:
    there = urls.share(_remote("localhost"), destination)
    assert there is not None and there.url == f"http://{host}:41000/"


def test_nothing_to_share_for_other_forwards() -> None:
    assert urls.share(LOCAL, "gw") is None
    assert (
        urls.share(forward_snapshot("-D 0", listen_host="::1", listen_port=1), "gw")
        is None
    )
    assert urls.share(_remote("localhost", spec="-R 0"), "gw") is None  # SOCKS
    unix = forward_snapshot(
        "-R /run/dash.sock:127.0.0.1:8050", listen_path="/run/dash.sock"
    )
    assert urls.share(unix, "gw") is None
    assert urls.share(_remote("localhost", state="reconnecting"), "gw") is None
    assert (
        urls.share(forward_snapshot("-R 0:h:80", listen_host="localhost"), "gw") is None
    )
