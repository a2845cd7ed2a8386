"""Destinations as ssh writes them: ``[user@]host[:port]``, ``ssh://...``,
and the comma-separated hops of ``-J``/``ProxyJump``."""

from __future__ import annotations

from dataclasses import dataclass

from .flags import USER_RULE, decimal, has_space, is_alias, is_user, q, spec_error
from .forwards import bracketed


@dataclass(frozen=True)
class Destination:
    """The host to connect to (or a jump host), with its user and port if given."""

    host: str
    user: str | None = None
    port: int | None = None

    @property
    def text(self) -> str:
        user = f"{self.user}@" if self.user is not None else ""
        if self.port is None:
            return f"{user}{self.host}"
        return f"ssh://{user}{bracketed(self.host)}:{self.port}"

    def __str__(self) -> str:
        return self.text


def parse_destination(text: str) -> Destination:
    """Parse ``[user@]host[:port]``, ``[user@][v6]:port`` or ``ssh://...``."""
    return _destination(text, "destination")


def _destination(text: str, what: str) -> Destination:
    if not text:
        raise spec_error(what, text, "it is empty")
    if has_space(text):
        raise spec_error(what, text, "whitespace is not allowed")
    rest = text
    if text.startswith("ssh://"):
        rest, slash, path = text[len("ssh://") :].partition("/")
        # OpenSSH takes a bare trailing "/" but no path after it.
        if path:
            path = slash + path
            reason = f"an ssh:// destination takes no path, not {q(path)}"
            raise spec_error(what, text, reason, path)
    # The last "@" splits, as in ssh.c: a user name may contain "@".
    user, at, hostport = rest.rpartition("@")
    if at and not user:
        raise spec_error(what, text, "the user name before '@' is empty")
    if at and not is_user(user):
        raise spec_error(what, text, f"bad user name {q(user)}: {USER_RULE}", user)

    port_text: str | None = None
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise spec_error(what, text, f"{q(hostport)} has no closing ']'", hostport)
        host, after = hostport[1:close], hostport[close + 1 :]
        if after and not after.startswith(":"):
            raise spec_error(what, text, f"{q(after)} after ']' is not ':port'", after)
        port_text = after[1:] if after else None
    elif hostport.count(":") == 1:
        host, _, port_text = hostport.partition(":")
    else:
        # Two or more colons can only be a bare IPv6 address, without a port.
        host = hostport
    if not host:
        raise spec_error(what, text, "the host is empty")
    if not is_alias(host):
        reason = f"bad host {q(host)}: use a host name, an alias or an IP address"
        raise spec_error(what, text, reason, host)
    port = None
    if port_text is not None:
        port = decimal(port_text, 1, 65535)
        if port is None and not port_text:
            raise spec_error(what, text, "the port after ':' is empty")
        if port is None:
            reason = f"port {q(port_text)} is not a number from 1 to 65535"
            raise spec_error(what, text, reason, port_text)
    return Destination(host, user if at else None, port)


def parse_jump(value: str, where: str) -> tuple[tuple[Destination, ...], bool]:
    """The hops of ``-J``/``ProxyJump``, and whether it was ``none``."""
    if value.lower() == "none":
        return (), True
    hops = []
    for part in value.split(","):
        if not part:
            raise spec_error(where, value, "a jump host is empty")
        if part.lower() == "none":
            reason = f"{q(part)} turns jumping off and must stand alone"
            raise spec_error(where, value, reason, part)
        hops.append(_destination(part, f"jump host in {where}"))
    return tuple(hops), False
