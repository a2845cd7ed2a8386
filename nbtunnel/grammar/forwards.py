"""Forwards as ssh writes them: the argument of ``-L``, ``-R`` and ``-D``.

``parse_forward("-L", "9000:db:5432")`` reads it as OpenSSH's readconf.c
does (fields split at ":", brackets and backslashes for IPv6 addresses and
socket paths) and gives a frozen :class:`ForwardSpec`, whose ``text`` is
the canonical argument again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ..errors import SpecError
from .flags import (
    HOST_RULE,
    decimal,
    forms_of,
    has_space,
    is_network_host,
    q,
    spec_error,
)
from .hostnames import host_name_problem, invalid_host

ForwardKind = Literal["local", "remote", "dynamic"]

KIND_OF_FLAG: dict[str, ForwardKind] = {"-L": "local", "-R": "remote", "-D": "dynamic"}
_FLAG_OF_KIND = {kind: flag for flag, kind in KIND_OF_FLAG.items()}


def bracketed(host: str) -> str:
    """``host`` as it goes before ``:port``: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def _format_path(path: str) -> str:
    if ":" not in path and "\\" not in path and not path.startswith("["):
        return path
    if "]" not in path:
        return f"[{path}]"
    # A "]" cannot sit inside brackets, so escape instead; never "/", whose
    # unescaped presence is what marks the field as a path.
    escaped = re.sub(r"([\\:])", r"\\\1", path)
    return "\\" + escaped if escaped.startswith("[") else escaped


@dataclass(frozen=True)
class ForwardSpec:
    """One ``-L``, ``-R`` or ``-D`` forward as written; made by parse_forward()."""

    kind: ForwardKind
    listen_host: str | None = None
    listen_port: int | None = None
    listen_path: str | None = None
    target_host: str | None = None
    target_port: int | None = None
    target_path: str | None = None

    @property
    def flag(self) -> str:
        return _FLAG_OF_KIND[self.kind]

    @property
    def is_dynamic(self) -> bool:
        """Whether this is a SOCKS proxy (``-D``, or ``-R`` without a target)."""
        return self.kind == "dynamic" or (
            self.kind == "remote"
            and self.target_host is None
            and self.target_path is None
        )

    @property
    def text(self) -> str:
        """The canonical argument, without the flag."""
        if self.listen_path is not None:
            listen = _format_path(self.listen_path)
        elif self.listen_host is None:
            listen = f"{self.listen_port}"
        else:
            listen = f"{bracketed(self.listen_host)}:{self.listen_port}"
        if self.target_path is not None:
            return f"{listen}:{_format_path(self.target_path)}"
        if self.target_host is not None:
            return f"{listen}:{bracketed(self.target_host)}:{self.target_port}"
        return listen

    def __str__(self) -> str:
        return f"{self.flag} {self.text}"


def _forward_error(flag: str, text: str, reason: str, bad: str = "") -> SpecError:
    return spec_error(f"{flag} spec", text, reason, bad, flag)


def _split_fields(text: str, flag: str) -> list[tuple[str, bool]]:
    """OpenSSH's parse_fwd_field, applied until the text runs out.

    Each field comes back unescaped, with whether it names a unix socket.
    Unlike OpenSSH, a trailing ":" yields an empty field, so "9000:db:"
    reports its missing port instead of silently meaning something else.
    """
    fields: list[tuple[str, bool]] = []
    i, end = 0, len(text)
    while True:
        if text.startswith("[", i):
            close = text.find("]", i + 1)
            if close < 0:
                part = text[i:]
                reason = f"{q(part)} opens '[' without a matching ']'"
                raise _forward_error(flag, text, reason, part)
            if close + 1 < end and text[close + 1] != ":":
                part = text[i : close + 2]
                reason = f"{q(part)}: ']' must be followed by ':' or the end"
                raise _forward_error(flag, text, reason, part)
            field = text[i + 1 : close]
            fields.append((field, "/" in field))
            i = close + 1
        else:
            chars: list[str] = []
            is_path = False
            while i < end and text[i] != ":":
                if text[i] == "\\":
                    i += 1
                    if i == end:
                        raise _forward_error(flag, text, "it ends in a lone backslash")
                # An escaped "/" is just a character, as in OpenSSH.
                elif text[i] == "/":
                    is_path = True
                chars.append(text[i])
                i += 1
            fields.append(("".join(chars), is_path))
        if i >= end:
            return fields
        i += 1


def _forward_port(flag: str, text: str, raw: str, low: int) -> int:
    number = decimal(raw, low, 65535)
    if number is not None:
        return number
    if not raw:
        raise _forward_error(flag, text, "a port is missing")
    reason = f"port {q(raw)} is not a number from {low} to 65535"
    message = (
        f"port {q(raw)} in {q(flag + ' ' + text)} is not a number"
        f" from {low} to 65535\n{forms_of(flag)}"
    )
    raise SpecError(message, text=raw, reason=reason)


def _check_host(flag: str, text: str, host: str, what: str, here: bool) -> None:
    """``here``: this machine looks the name up, and Python's resolver
    refuses a name DNS cannot carry; the server's may know it otherwise."""
    if not host:
        raise _forward_error(flag, text, f"the {what} is empty")
    if not is_network_host(host):
        raise _forward_error(flag, text, f"bad {what} {q(host)}: {HOST_RULE}", host)
    problem = host_name_problem(host) if here else None
    if problem is not None:
        # The form is right, so no list of forms: the name is what is wrong.
        raise spec_error(f"{flag} spec", text, invalid_host(host, problem), host)


def parse_forward(flag: str, text: str) -> ForwardSpec:
    """Parse the argument of ``-L``, ``-R`` or ``-D`` as OpenSSH's readconf.c does."""
    kind = KIND_OF_FLAG.get(flag)
    if kind is None:
        raise spec_error("forward flag", flag, "use -L, -R or -D")
    if not text:
        raise _forward_error(flag, text, "it is empty")
    if has_space(text):
        raise _forward_error(flag, text, "whitespace is not allowed in a spec")
    fields = _split_fields(text, flag)
    if len(fields) > 4:
        reason = f"{len(fields)} ':'-separated fields; at most 4 are allowed"
        raise _forward_error(flag, text, reason)

    lhost: str | None = None
    lport: str | None = None
    lpath: str | None = None
    thost: str | None = None
    tport: str | None = None
    tpath: str | None = None
    args = [arg for arg, _ in fields]
    paths = [is_path for _, is_path in fields]
    # The field count and which fields are paths decide the form, exactly
    # as in readconf.c; the flag's own rules are checked afterwards.
    if len(fields) == 1:
        if paths[0]:
            lpath = args[0]
        else:
            lport = args[0]
    elif len(fields) == 2:
        if paths[0] and paths[1]:
            lpath, tpath = args
        elif paths[1]:
            lport, tpath = args
        else:
            lhost, lport = args
    elif len(fields) == 3:
        if paths[0]:
            lpath, thost, tport = args
        elif paths[2]:
            lhost, lport, tpath = args
        else:
            lport, thost, tport = args
    else:
        lhost, lport, thost, tport = args

    has_target = thost is not None or tpath is not None
    if kind == "dynamic" and (has_target or lpath is not None):
        reason = "a dynamic forward takes only [bind_address:]port"
        raise _forward_error(flag, text, reason)
    if kind == "local" and not has_target:
        raise _forward_error(flag, text, "a local forward needs a target")
    if kind == "remote" and not has_target and lpath is not None:
        raise _forward_error(flag, text, "a remote socket forward needs a target")

    if lhost is not None and lhost not in ("", "*"):
        _check_host(flag, text, lhost, "bind address", kind != "remote")
    # An empty bind address means every interface, just as "*" does.
    listen_host = "*" if lhost == "" else lhost
    listen_port = None if lport is None else _forward_port(flag, text, lport, 0)
    if thost is not None:
        _check_host(flag, text, thost, "target host", kind == "remote")
    target_port = None if tport is None else _forward_port(flag, text, tport, 1)
    return ForwardSpec(kind, listen_host, listen_port, lpath, thost, target_port, tpath)


def parse_cancel(flag: str, text: str) -> ForwardSpec:
    """The listening side that ssh's ``-KL``, ``-KR`` and ``-KD`` name (its
    ``~C`` command line; ``flag`` may be ``-KL`` or ``-L``): ``[bind_address:]port``,
    or for ``-KL`` and ``-KR`` the path of a unix socket.  As ssh.c reads it
    (readconf.c's parse_forward, one or two fields); errors name ``-K``."""
    kind = KIND_OF_FLAG.get("-" + flag[-1:])
    if kind is None or flag not in (f"-{flag[-1:]}", f"-K{flag[-1:]}"):
        raise SpecError(f"cancel -L, -R or -D forwards, not {flag}", text=flag)
    cancel = f"-K{flag[-1]}"
    sockets = " or the path of its unix socket" if kind != "dynamic" else ""
    use = f"use {cancel} [bind_address:]port{sockets}"

    def bad(reason: str, part: str) -> SpecError:
        message = f"bad {cancel} {q(text)}: {reason}; {use}"
        return SpecError(message, text=part or text, reason=reason)

    if not text or has_space(text):
        raise bad("it is empty" if not text else "whitespace is not allowed", text)
    try:
        fields = _split_fields(text, cancel[0] + cancel[2])
    except SpecError as exc:  # said of -L: said again of -KL
        raise bad(exc.reason, exc.text) from None
    if len(fields) > 2 or any(is_path for _, is_path in fields[1:]):
        raise bad("a cancel names where the forward listens, not its target", text)
    (first, is_path), *rest = fields
    if is_path:
        if kind == "dynamic":
            raise bad("a -D forward listens on a port, not a socket", first)
        return ForwardSpec(kind, listen_path=first)
    host, raw = (first, rest[0][0]) if rest else (None, first)
    port = decimal(raw, 1, 65535)
    if port is None:
        raise bad(f"port {q(raw)} is not a number from 1 to 65535", raw)
    listen_host = "*" if host == "" else host
    return ForwardSpec(kind, listen_host=listen_host, listen_port=port)
