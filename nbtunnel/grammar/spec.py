"""The OpenSSH command line: ``ssh`` lines to a frozen :class:`TunnelSpec` and back.

``parse`` reads the flags as getopt in ssh.c does; the forwards and
destinations it meets are read by ``forwards`` and ``destinations``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..errors import SpecError
from .destinations import Destination, parse_destination, parse_jump
from .flags import (
    SUPPORTED_OPTIONS,
    UNSUPPORTED_FLAGS,
    USAGE,
    USER_RULE,
    canonical_key,
    cipher_names,
    decimal,
    forms_of,
    is_secret,
    is_user,
    option_value,
    path_value,
    q,
    spec_error,
)
from .forwards import KIND_OF_FLAG, ForwardSpec, parse_forward
from .suggest import closest, unsupported_key

AddressFamily = Literal["any", "inet", "inet6"]

_FORWARD_OPTIONS = {"LocalForward": "-L", "RemoteForward": "-R", "DynamicForward": "-D"}

_WITH_ARGUMENT = frozenset("LRDplJiFoc")
# A tunnel never runs a shell, so these ask for nothing it would not do anyway.
_NO_OPS = frozenset("NnTf")
_LETTERS = _WITH_ARGUMENT | _NO_OPS | frozenset("g46Cv")
_LONG_FLAGS = ("--no-reconnect",)
_OPTION = re.compile(r"\s*([A-Za-z][A-Za-z0-9]*)(?:\s*=\s*|\s+)(.*?)\s*", re.DOTALL)


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
            raise _unknown_flag(flag, closest(letter, _LETTERS))

    def argument(self, flag: str, value: str) -> None:
        # The first -p and -l win, the last -F and -c: as in ssh.c.
        if flag in KIND_OF_FLAG:
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
            self.jump = parse_jump(value, "-J")
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
            # ssh may have it (ForwardAgent), nbtunnel not; or a typo.
            raise unsupported_key(key, SUPPORTED_OPTIONS)
        if not value:
            raise SpecError(f"option {q(key)} needs a value", text=key)
        if canonical in _FORWARD_OPTIONS:
            self.forwards.append(_option_forward(canonical, value))
        elif canonical == "ProxyJump":
            jump = parse_jump(value, "ProxyJump")
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


def _argv(line: object) -> list[str]:
    """A line given as argv; every public entry point comes through here."""
    wanted = "the command line must be a string or a list of strings"
    # A str is split above; bytes would be a sequence of numbers.
    if isinstance(line, bytes) or not isinstance(line, Sequence):
        shown = "None" if line is None else type(line).__name__
        raise TypeError(f"{wanted}, not {shown}")
    for n, token in enumerate(line, 1):
        if not isinstance(token, str):
            raise TypeError(f"{wanted}; word {n} is {type(token).__name__}: {token!r}")
    return list(line)


def _unknown_flag(flag: str, guess: str | None) -> SpecError:
    """An unknown flag: the one it may be a typo of, or else the usage."""
    if guess is None:
        return SpecError(f"unknown option {q(flag)}\n{USAGE}", text=flag)
    guess = guess if guess.startswith("-") else "-" + guess
    reason = f"did you mean {guess}?"
    return SpecError(f"unknown option {q(flag)}; {reason}", text=flag, reason=reason)


def _tokens(line: str | Sequence[str]) -> list[str]:
    if isinstance(line, str):
        try:
            tokens = shlex.split(line)
        except ValueError as exc:
            raise spec_error("line", line, str(exc).lower()) from None
    else:
        tokens = _argv(line)
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
            raise _unknown_flag(token, closest(token, _LONG_FLAGS))
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
