"""The OpenSSH command-line grammar: ``ssh`` lines to frozen specs and back."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..errors import SpecError
from .flags import (
    ACCEPTED_FORMS,
    HOST_RULE,
    SUPPORTED_OPTIONS,
    UNSUPPORTED_FLAGS,
    USAGE,
    USER_RULE,
    canonical_key,
    cipher_names,
    decimal,
    forms_of,
    has_space,
    is_alias,
    is_network_host,
    is_secret,
    is_user,
    option_value,
    path_value,
    q,
    spec_error,
)

__all__ = [
    "ACCEPTED_FORMS",
    "SUPPORTED_OPTIONS",
    "AddressFamily",
    "Destination",
    "ForwardKind",
    "ForwardSpec",
    "TunnelSpec",
    "parse",
    "parse_destination",
    "parse_forward",
]

ForwardKind = Literal["local", "remote", "dynamic"]
AddressFamily = Literal["any", "inet", "inet6"]

_KIND_OF_FLAG: dict[str, ForwardKind] = {"-L": "local", "-R": "remote", "-D": "dynamic"}
_FLAG_OF_KIND = {kind: flag for flag, kind in _KIND_OF_FLAG.items()}
_FORWARD_OPTIONS = {"LocalForward": "-L", "RemoteForward": "-R", "DynamicForward": "-D"}

_WITH_ARGUMENT = frozenset("LRDplJiFoc")
# A tunnel never runs a shell, so these ask for nothing it would not do anyway.
_NO_OPS = frozenset("NnTf")
_OPTION = re.compile(r"\s*([A-Za-z][A-Za-z0-9]*)(?:\s*=\s*|\s+)(.*?)\s*", re.DOTALL)


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


@dataclass(frozen=True)
class TunnelSpec:
    """One whole command line.

    ``-o LocalForward``/``RemoteForward``/``DynamicForward`` land in
    ``forwards`` and ``-o ProxyJump`` in ``jump``; neither stays in ``options``.
    """

    destination: Destination
    forwards: tuple[ForwardSpec, ...] = ()
    port: int | None = None
    login: str | None = None
    identities: tuple[str, ...] = ()
    jump: tuple[Destination, ...] = ()
    jump_none: bool = False
    config_file: str | None = None
    ciphers: tuple[str, ...] = ()
    options: tuple[tuple[str, str], ...] = ()
    gateway_ports: bool = False
    address_family: AddressFamily = "any"
    compression: bool = False
    verbose: int = 0

    def option(self, key: str) -> str | None:
        """The value of ``-o key`` (any case); the first one given wins, as in ssh."""
        wanted = key.lower()
        for name, value in self.options:
            if name.lower() == wanted:
                return value
        return None

    @property
    def user(self) -> str | None:
        if self.login is not None:
            return self.login
        if self.destination.user is not None:
            return self.destination.user
        return self.option("User")

    @property
    def effective_port(self) -> int | None:
        if self.port is not None:
            return self.port
        if self.destination.port is not None:
            return self.destination.port
        port = self.option("Port")
        return int(port) if port is not None else None

    @property
    def text(self) -> str:
        """The canonical line; ``parse(spec.text) == spec``."""
        words: list[str] = []
        if self.address_family != "any":
            words.append("-4" if self.address_family == "inet" else "-6")
        if self.compression:
            words.append("-C")
        if self.gateway_ports:
            words.append("-g")
        if self.verbose:
            words.append("-" + "v" * self.verbose)
        if self.port is not None:
            words += ["-p", str(self.port)]
        if self.login is not None:
            words += ["-l", self.login]
        for identity in self.identities:
            words += ["-i", identity]
        if self.config_file is not None:
            words += ["-F", self.config_file]
        if self.ciphers:
            words += ["-c", ",".join(self.ciphers)]
        if self.jump_none:
            words += ["-J", "none"]
        elif self.jump:
            words += ["-J", ",".join(hop.text for hop in self.jump)]
        for key, value in self.options:
            words += ["-o", f"{key}={value}"]
        for forward in self.forwards:
            words += [forward.flag, forward.text]
        words.append(self.destination.text)
        return " ".join(shlex.quote(word) for word in words)

    def __str__(self) -> str:
        return self.text


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


def _check_host(flag: str, text: str, host: str, what: str) -> None:
    if not host:
        raise _forward_error(flag, text, f"the {what} is empty")
    if not is_network_host(host):
        raise _forward_error(flag, text, f"bad {what} {q(host)}: {HOST_RULE}", host)


def parse_forward(flag: str, text: str) -> ForwardSpec:
    """Parse the argument of ``-L``, ``-R`` or ``-D`` as OpenSSH's readconf.c does."""
    kind = _KIND_OF_FLAG.get(flag)
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
        _check_host(flag, text, lhost, "bind address")
    # An empty bind address means every interface, just as "*" does.
    listen_host = "*" if lhost == "" else lhost
    listen_port = None if lport is None else _forward_port(flag, text, lport, 0)
    if thost is not None:
        _check_host(flag, text, thost, "target host")
    target_port = None if tport is None else _forward_port(flag, text, tport, 1)
    return ForwardSpec(kind, listen_host, listen_port, lpath, thost, target_port, tpath)


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


def _jump(value: str, where: str) -> tuple[tuple[Destination, ...], bool]:
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


def _option_forward(key: str, value: str) -> ForwardSpec:
    # OpenSSH writes "LocalForward 9000 db:5432": listen and target apart.
    parts = value.split()
    if len(parts) > 2:
        reason = "put one space between the listen and the target part"
        raise spec_error(key, value, reason)
    try:
        return parse_forward(_FORWARD_OPTIONS[key], ":".join(parts))
    except SpecError as exc:
        message = f"in -o {q(key + ' ' + value)}: {exc}"
        raise SpecError(message, text=exc.text, reason=exc.reason) from None


class _Line:
    """What the flags of one command line said so far."""

    def __init__(self) -> None:
        self.forwards: list[ForwardSpec] = []
        self.port: int | None = None
        self.login: str | None = None
        self.identities: list[str] = []
        self.jump: tuple[tuple[Destination, ...], bool] | None = None
        self.option_jump: tuple[tuple[Destination, ...], bool] | None = None
        self.config_file: str | None = None
        self.ciphers: tuple[str, ...] = ()
        self.options: list[tuple[str, str]] = []
        self.gateway_ports = False
        self.address_family: AddressFamily = "any"
        self.compression = False
        self.verbose = 0

    def switch(self, flag: str) -> None:
        letter = flag[1]
        if letter == "g":
            self.gateway_ports = True
        elif letter == "4":
            self.address_family = "inet"
        elif letter == "6":
            self.address_family = "inet6"
        elif letter == "C":
            self.compression = True
        elif letter == "v":
            self.verbose += 1
        elif letter in UNSUPPORTED_FLAGS:
            reason = UNSUPPORTED_FLAGS[letter]
            message = f"nbtunnel does not support {q(flag)} ({reason})"
            raise SpecError(message, text=flag, reason=reason)
        elif letter not in _NO_OPS:
            raise SpecError(f"unknown option {q(flag)}\n{USAGE}", text=flag)

    def argument(self, flag: str, value: str) -> None:
        # The first -p and -l win, the last -F and -c: as in ssh.c.
        if flag in _KIND_OF_FLAG:
            self.forwards.append(parse_forward(flag, value))
        elif flag == "-p":
            port = decimal(value, 1, 65535)
            if port is None:
                raise spec_error("-p port", value, "use a number from 1 to 65535")
            self.port = port if self.port is None else self.port
        elif flag == "-l":
            if not is_user(value):
                raise spec_error("-l login name", value, USER_RULE)
            self.login = value if self.login is None else self.login
        elif flag == "-i":
            self.identities.append(path_value(value, flag))
        elif flag == "-F":
            self.config_file = path_value(value, flag)
        elif flag == "-c":
            self.ciphers = cipher_names(value, "-c")
        elif flag == "-J":
            if self.jump is not None:
                reason = "only one -J is allowed; list the hops with commas"
                raise spec_error("second -J", value, reason)
            self.jump = _jump(value, "-J")
        else:
            self.option(value)

    def option(self, text: str) -> None:
        found = _OPTION.fullmatch(text)
        key = found.group(1) if found else (text.split("=", 1)[0].split() or [""])[0]
        # Checked before anything that would echo the value back.
        if is_secret(key):
            reason = "never put secrets on the command line; nbtunnel asks for them"
            raise SpecError(f"option {q(key)}: {reason}", text=key, reason=reason)
        if found is None:
            raise spec_error("option", text, "write it as Key=Value", flag="-o")
        value = found.group(2)
        canonical = canonical_key(key)
        if canonical is None:
            supported = ", ".join(SUPPORTED_OPTIONS)
            message = f"unsupported option {q(key)}; nbtunnel supports {supported}"
            raise SpecError(message, text=key, reason="unsupported option")
        if not value:
            raise SpecError(f"option {q(key)} needs a value", text=key)
        if canonical in _FORWARD_OPTIONS:
            self.forwards.append(_option_forward(canonical, value))
        elif canonical == "ProxyJump":
            jump = _jump(value, "ProxyJump")
            # The first ProxyJump wins, and -J wins over every one of them.
            self.option_jump = self.option_jump or jump
        else:
            self.options.append((canonical, option_value(canonical, value)))

    def refuse_forward(self, token: str) -> None:
        """Refuse a forward spec written without its flag, with a hint."""
        if ":" not in token:
            return
        last = self.forwards[-1] if self.forwards else None
        flag = last.flag if last is not None and last.kind != "dynamic" else "-L"
        try:
            forward = parse_forward(flag, token)
        except SpecError:
            return
        if not forward.is_dynamic:
            hint = f"did you mean {q(flag + ' ' + token)}?"
            message = f"{q(token)} is not a destination: {hint}"
            raise SpecError(message, text=token, reason=hint)

    def build(self, destination: Destination) -> TunnelSpec:
        jump, jump_none = self.jump or self.option_jump or ((), False)
        return TunnelSpec(
            destination=destination,
            forwards=tuple(self.forwards),
            port=self.port,
            login=self.login,
            identities=tuple(self.identities),
            jump=jump,
            jump_none=jump_none,
            config_file=self.config_file,
            ciphers=self.ciphers,
            options=tuple(self.options),
            gateway_ports=self.gateway_ports,
            address_family=self.address_family,
            compression=self.compression,
            verbose=self.verbose,
        )


def _tokens(line: str | Sequence[str]) -> list[str]:
    if isinstance(line, str):
        try:
            tokens = shlex.split(line)
        except ValueError as exc:
            raise spec_error("line", line, str(exc).lower()) from None
    else:
        tokens = list(line)
    # Only when more follows: a lone "ssh" is a host of that name.
    if len(tokens) > 1 and tokens[0] == "ssh":
        del tokens[0]
    return tokens


def parse(line: str | Sequence[str]) -> TunnelSpec:
    """Parse an ``ssh`` command line as getopt in ssh.c reads it.

    A string is split as a POSIX shell would; a sequence is taken as argv.
    Anything else raises SpecError, quoting the bad part.
    """
    tokens = _tokens(line)
    state = _Line()
    destination: Destination | None = None
    index, terminated = 0, False
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if terminated or token == "-" or not token.startswith("-"):
            state.refuse_forward(token)
            if destination is not None:
                command = " ".join(tokens[index - 1 :])
                reason = "nbtunnel runs no remote command"
                raise SpecError(f"{reason}: {q(command)}", text=command, reason=reason)
            destination = parse_destination(token)
            continue
        if token == "--":
            terminated = True
            continue
        if token == "--no-reconnect":
            # nbtunnel's one long flag; it wins over any -o Reconnect.
            state.options.insert(0, ("Reconnect", "no"))
            continue
        if token.startswith("--"):
            raise SpecError(f"unknown option {q(token)}\n{USAGE}", text=token)
        # One word may hold several flags; an argument ends it ("-NL9000:db:1").
        position = 1
        while position < len(token):
            flag = "-" + token[position]
            position += 1
            if flag[1] not in _WITH_ARGUMENT:
                state.switch(flag)
            elif position < len(token):
                state.argument(flag, token[position:])
                break
            elif index < len(tokens):
                state.argument(flag, tokens[index])
                index += 1
                break
            else:
                message = f"option {q(flag)} needs an argument\n{forms_of(flag)}"
                raise SpecError(message, text=flag, reason="needs an argument")
    if destination is None:
        shown = " ".join(tokens)
        reason = "say which host to connect to"
        message = f"no destination in {q(shown)}: {reason}\n{USAGE}"
        raise SpecError(message, text=shown, reason=reason)
    return state.build(destination)
