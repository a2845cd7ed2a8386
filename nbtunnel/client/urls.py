"""A forward's ends as URLs: a client's URL pointed at a -L, proxies for a -D, a -R to share.

Pure string work on snapshots, no I/O: ``Forward.url``/``Forward.proxies``
and the display call it.  Templates are rewritten as text rather than
parsed and rebuilt, so everything but the host and port (user, an encoded
password, path, query, fragment) comes back exactly as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import quote, unquote

from ..errors import SpecError, UrlError
from ..grammar.destinations import parse_destination
from ..grammar.forwards import bracketed, parse_forward
from ..status import ForwardSnapshot
from .browser import Route

__all__ = [
    "Share",
    "UrlError",
    "browser_url",
    "connect_host",
    "forward_url",
    "open_url",
    "proxies",
    "share",
    "url_with",
]


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_POSTGRES = {"postgresql", "postgres"}
# libpq finds a server's socket as DIR/.s.PGSQL.PORT, from host=DIR and port.
_PG_SOCKET = re.compile(r"\.s\.PGSQL\.(\d{1,5})")
# libpq query keys that would override the host and port in the authority.
_PG_WHERE = {"host", "hostaddr", "port"}
_FORM = "scheme://[user[:password]@]host[:port][/path][?query][#fragment]"
# Listening on every address; a client on this machine reaches it on loopback.
_WILDCARD = {None, "", "*", "0.0.0.0", "::"}
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_GATEWAY_PORTS_NO = (
    "if people elsewhere are refused, the server's GatewayPorts (sshd_config, "
    "default no) kept it on loopback: set GatewayPorts clientspecified or yes there"
)


@dataclass(frozen=True)
class _Url:
    """A URL cut into the pieces a rewrite touches, each as written."""

    scheme: str
    userinfo: str | None  # without its "@"; None when there is no "@"
    hostport: str
    path: str
    query: str | None  # without its "?"
    fragment: str | None  # without its "#"

    @property
    def base_scheme(self) -> str:
        """The scheme without a driver: ``postgresql`` of ``postgresql+psycopg2``."""
        return self.scheme.split("+", 1)[0].lower()

    def text(self) -> str:
        user = "" if self.userinfo is None else self.userinfo + "@"
        query = "" if self.query is None else "?" + self.query
        fragment = "" if self.fragment is None else "#" + self.fragment
        return f"{self.scheme}://{user}{self.hostport}{self.path}{query}{fragment}"


def _bad(template: str, reason: str) -> UrlError:
    return UrlError(f"URL template {template!r}: {reason}; the form is {_FORM}")


def _split(template: str) -> _Url:
    if not isinstance(template, str):
        raise UrlError(f"a URL template is a str, not {type(template).__name__}")
    match = _SCHEME.match(template)
    if match is None:
        raise _bad(template, "it has no scheme:// at the start")
    rest = template[match.end() :]
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    tail, hashmark, fragment = tail.partition("#")
    path, mark, query = tail.partition("?")
    # The last "@" ends the user part, as in ssh and libpq; the first would
    # cut a password that holds an unencoded "@".
    userinfo, at, hostport = authority.rpartition("@")
    _check_hostport(template, hostport)
    return _Url(
        scheme=match.group()[:-3],
        userinfo=userinfo if at else None,
        hostport=hostport,
        path=path,
        query=query if mark else None,
        fragment=fragment if hashmark else None,
    )


def _check_hostport(template: str, hostport: str) -> None:
    """Refuse what would be a guess: it is replaced, but a mistake in it is a
    sign that the rest was not cut where the writer meant."""
    if "," in hostport:
        raise _bad(
            template,
            f"{hostport!r} names several hosts; a forward is one of them, "
            "so write the one it reaches",
        )
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise _bad(template, f"{hostport!r} opens '[' without a closing ']'")
        after = hostport[close + 1 :]
        if after and not after.startswith(":"):
            raise _bad(template, f"{after!r} after ']' is not ':port'")
        port = after[1:]
    elif hostport.count(":") > 1:
        raise _bad(template, f"an IPv6 address goes in brackets, as [{hostport}]")
    else:
        port = hostport.partition(":")[2]
    if not port:
        return
    if not (port.isdigit() and port.isascii()):
        # Most often a password's "/" or "@" that cut the URL in the wrong place.
        raise _bad(
            template,
            f"port {port!r} is not a number (a '/', '?', '#' or '@' in a password "
            "must be percent-encoded, as %2F, %3F, %23, %40)",
        )
    if not 0 < int(port) < 65536:
        raise _bad(template, f"port {port} is not from 1 to 65535")


def _without_keys(query: str | None, keys: set[str]) -> list[str]:
    if not query:
        return []
    return [
        part
        for part in query.split("&")
        if part and unquote(part.partition("=")[0]) not in keys
    ]


def url_with(template: str, host: str, port: int) -> str:
    """``template`` with its host and port replaced, everything else as written.

    For PostgreSQL URLs, ``host``, ``hostaddr`` and ``port`` in the query
    are dropped too, since libpq would let them override the new address.
    """
    url = _split(template)
    query = url.query
    if url.base_scheme in _POSTGRES:
        kept = _without_keys(url.query, _PG_WHERE)
        query = "&".join(kept) if kept else None
    return replace(url, hostport=f"{bracketed(host)}:{port}", query=query).text()


def _unix_url(template: str, path: str, spec: str) -> str:
    url = _split(template)
    if url.base_scheme not in _POSTGRES:
        raise UrlError(
            f"{spec} listens on the unix socket {path} on this machine, which a "
            f"{url.scheme}:// URL cannot name; forward from a TCP port instead "
            "(-L 0:...), and url() gives 127.0.0.1 and that port"
        )
    directory, _, name = path.rpartition("/")
    directory = directory or "/"  # a path always has a "/": "/name" is in /
    match = _PG_SOCKET.fullmatch(name)
    if match is None or not 0 < int(match.group(1)) < 65536:
        raise UrlError(
            f"{spec} listens on the unix socket {path}, but PostgreSQL clients "
            "find a socket as DIRECTORY/.s.PGSQL.PORT: name the local socket like "
            "that (e.g. -L /tmp/pg/.s.PGSQL.5432:...), or forward from a TCP "
            "port (-L 0:...)"
        )
    kept = _without_keys(url.query, _PG_WHERE)
    kept += [f"host={quote(directory, safe='/')}", f"port={match.group(1)}"]
    # libpq: an empty host in the authority, the socket's directory in host=.
    return replace(url, hostport="", query="&".join(kept)).text()


def connect_host(listen_host: str | None) -> str:
    """Where a client on this machine connects to reach a listener bound at ``listen_host``."""
    if listen_host == "::":
        return "::1"
    if listen_host in _WILDCARD or listen_host == "localhost":
        return "127.0.0.1"
    return listen_host or "127.0.0.1"


def _check_live(f: ForwardSnapshot) -> None:
    if f.state in ("stopped", "failed"):
        raise UrlError(f"{f.spec} is {f.state}: nothing listens on its end any more")
    if f.listen_path is None and not f.listen_port:
        raise UrlError(f"{f.spec} has no port yet (it is {f.state})")


def forward_url(template: str, f: ForwardSnapshot, destination: str) -> str:
    """``template`` pointed at the local end of the -L forward ``f``.

    A unix-socket local end works for PostgreSQL URLs named like libpq's
    sockets (``?host=DIR&port=N``); a -R or -D raises UrlError, saying why.
    """
    _split(template)  # a malformed template is reported before anything else
    if f.kind == "dynamic":
        raise UrlError(
            f"{f.spec} is a SOCKS proxy, not one service, so it has no URL of its "
            "own: pass fwd.proxies to requests or httpx, or give its "
            "socks5h:// address to other clients"
        )
    if f.kind == "remote":
        there = share(f, destination)
        shared = (
            f"; people elsewhere would use {url_with(template, there.host, there.port)}"
            " (the tunnel's display says whether the server lets them)"
            if there
            else ""
        )
        raise UrlError(
            f"{f.spec} listens on the server, not on this machine: url() points "
            f"a client here at a -L forward{shared}"
        )
    _check_live(f)
    if f.listen_path is not None:
        return _unix_url(template, f.listen_path, f.spec)
    assert f.listen_port is not None
    return url_with(template, connect_host(f.listen_host), f.listen_port)


def proxies(f: ForwardSnapshot) -> dict[str, str]:
    """requests/httpx proxies for the -D forward ``f``; names are resolved by the server."""
    if f.kind != "dynamic":
        if f.kind == "remote":
            why = "listens on the server, for clients there"
        else:
            why = "leads to one service: use fwd.url(...) for it, or open -D 0"
        raise UrlError(
            f"{f.spec} is not a -D SOCKS proxy on this machine ({f.flag} {why})"
        )
    _check_live(f)
    assert f.listen_port is not None
    # socks5h, not socks5: the server resolves names, so internal names work.
    proxy = f"socks5h://{bracketed(connect_host(f.listen_host))}:{f.listen_port}"
    return {"http": proxy, "https": proxy}


# Ports web servers and dashboards are usually on, where a browser makes sense.
HTTP_PORTS = frozenset(
    {80, 443, 3000, 3001, 4000, 4200, 5000, 5173, 5601, 6006, 7860}
    | {8000, 8001, 8050, 8080, 8081, 8088, 8443, 8501, 8787, 8888, 8889, 9090}
)
HTTPS_PORTS = frozenset({443, 8443})
# Words in a target's name that say "a web page is there".
HTTP_NAMES = frozenset(
    {"http", "https", "web", "www", "jupyter", "notebook", "dashboard", "grafana"}
    | {"kibana", "prometheus", "tensorboard", "streamlit", "gradio", "airflow"}
)
_WORD = re.compile(r"[a-z]+")


def open_url(f: ForwardSnapshot, route: Route) -> str | None:
    """Where the browser opens a running -L to what looks like a web server
    (its port or its name says so): ``http://127.0.0.1:PORT/``, or through
    the Jupyter server's proxy (``route``) for a plain-HTTP one."""
    if (
        f.kind != "local"
        or f.state != "up"
        or f.listen_path is not None
        or not f.listen_port
        or f.target_path is not None
    ):
        return None
    port = f.target_port
    words = set(_WORD.findall((f.target_host or "").lower()))
    if port not in HTTP_PORTS and not words & HTTP_NAMES:
        return None
    # A wide bind is reached on loopback too.
    host = bracketed(connect_host(f.listen_host))
    if port in HTTPS_PORTS:
        # jupyter-server-proxy speaks plain HTTP to what it proxies, and
        # 127.0.0.1 is not where a browser elsewhere can go: no link then.
        return f"https://{host}:{f.listen_port}/" if route.prefix is None else None
    return route.url(f.listen_port, "/", host=host)


def browser_url(
    f: ForwardSnapshot, destination: str, route: Route, path: str, absolute: bool
) -> str:
    """Where a browser opens ``path`` of the web service at ``f``'s end: a -L
    through ``route`` (the Jupyter server's proxy, or this machine), a -R at
    the URL to share."""
    if not path.startswith("/"):
        path = "/" + path
    if f.kind == "remote":
        there = share(f, destination)
        if there is None:
            raise UrlError(
                f"{f.spec} has no address to share: it is not up, or it listens "
                "on a unix socket or as a SOCKS proxy on the server"
            )
        return there.url[:-1] + path
    if f.kind != "local":
        raise UrlError(f"{f.spec} is a SOCKS proxy: use fwd.proxies for it")
    _check_live(f)
    if f.listen_port is None:
        raise UrlError(f"{f.spec} listens on a unix socket: a browser cannot open it")
    host = bracketed(connect_host(f.listen_host))
    return route.url(f.listen_port, path, absolute=absolute, host=host)


def _destination_host(destination: str) -> str:
    try:
        return parse_destination(destination).host
    except SpecError:  # a Host alias is parsed too; anything else: its text
        return destination.rpartition("@")[2]


@dataclass(frozen=True)
class Share:
    """Where people elsewhere reach a -R forward, and what the server must allow."""

    host: str  # the ssh destination's, or the bind address asked for
    port: int
    advice: str

    @property
    def url(self) -> str:
        """``http://HOST:PORT/``: -R is how a kernel shows a dashboard."""
        return f"http://{bracketed(self.host)}:{self.port}/"


def share(f: ForwardSnapshot, destination: str) -> Share | None:
    """Where people elsewhere reach the -R forward ``f`` while it is up.

    None for forwards with no such address: -L/-D, a -R on a unix socket, a
    remote SOCKS proxy, or a -R that is not up.
    """
    if f.kind != "remote" or f.listen_path is not None or not f.listen_port:
        return None
    spec = parse_forward(*f.spec.split(" ", 1))
    if spec.is_dynamic or f.state != "up":
        return None
    bound = f.listen_host
    if bound in _LOOPBACK:
        # OpenSSH's sshd binds a -R asked for loopback to loopback whatever
        # the client's -g says; only its own GatewayPorts yes widens it.
        wide = replace(spec, listen_host="0.0.0.0").text
        advice = (
            "it listens on the server's loopback, so only the server itself "
            "reaches it (unless the server's sshd_config has GatewayPorts yes); "
            "to share it, set GatewayPorts clientspecified (or yes) in the "
            f"server's sshd_config and forward with -R {wide} "
            "(-g widens only -L and -D)"
        )
        return Share(_destination_host(destination), f.listen_port, advice)
    if bound is None or bound in _WILDCARD:
        return Share(_destination_host(destination), f.listen_port, _GATEWAY_PORTS_NO)
    return Share(bound, f.listen_port, _GATEWAY_PORTS_NO)
