"""The words of the ssh grammar: flag and ``-o`` tables, and checks of single values."""

from __future__ import annotations

import ipaddress
import re

from ..errors import SpecError
from .ssh_keywords import is_ssh_keyword
from .suggest import closest

ACCEPTED_FORMS: dict[str, tuple[str, ...]] = {
    "-L": (
        "[bind_address:]port:host:hostport",
        "[bind_address:]port:remote_socket",
        "local_socket:host:hostport",
        "local_socket:remote_socket",
    ),
    "-R": (
        "[bind_address:]port:host:hostport",
        "[bind_address:]port:local_socket",
        "remote_socket:host:hostport",
        "remote_socket:local_socket",
        "[bind_address:]port",
    ),
    "-D": ("[bind_address:]port",),
    "-p": ("port",),
    "-l": ("login_name",),
    "-i": ("identity_file",),
    "-J": ("destination[,destination...]", "none"),
    "-F": ("configfile",),
    "-o": ("Key=Value", "'Key Value'"),
    "-c": ("cipher_spec",),
}

# ssh(1)'s own short names in its synopsis, where the first form is long.
_SYNOPSIS_NAMES = {
    "-L": "address",
    "-R": "address",
    "-J": "destination",
    "-o": "option",
}


def usage(program: str, width: int = 79) -> str:
    """ssh(1)'s synopsis for ``program``, from the tables above, wrapped as
    ssh wraps it: each ``[-x value]`` whole, continued under the first."""
    # As in ssh(1): by letter, the capital first.
    flags = sorted(
        ACCEPTED_FORMS, key=lambda flag: (flag[1].lower(), flag[1].islower())
    )
    words = [
        "[-46CfgNnTVv]",
        *(f"[{f} {_SYNOPSIS_NAMES.get(f, ACCEPTED_FORMS[f][0])}]" for f in flags),
        "destination",
    ]
    lines = [f"usage: {program}"]
    pad = " " * (len(lines[0]) + 1)
    for word in words:
        if len(lines[-1]) + 1 + len(word) > width:
            lines.append(pad + word)
        else:
            lines[-1] += " " + word
    return "\n".join(lines)


USAGE = usage("nbtunnel")

# The switches (flags without a value) that change what a tunnel does;
# -N, -n, -T and -f are accepted too, and change nothing.
SWITCHES: tuple[str, ...] = ("-4", "-6", "-C", "-g", "-v")

# ssh(1) flags nbtunnel refuses, each with the short reason it gives.
UNSUPPORTED_FLAGS = {
    "A": "agent forwarding",
    "a": "agent forwarding is never on",
    "B": "binding to an interface",
    "b": "choosing the source address",
    "E": "log files; use -v",
    "e": "escape characters; there is no terminal",
    "G": "printing the configuration",
    "I": "PKCS#11 tokens",
    "K": "GSSAPI authentication",
    "k": "GSSAPI credential delegation",
    "M": "connection sharing is automatic",
    "S": "connection sharing is automatic",
    "O": "connection sharing is automatic",
    "m": "choosing MAC algorithms",
    "P": "Match tags",
    "Q": "querying algorithms",
    "q": "quiet mode",
    "s": "subsystems",
    "t": "terminals; a tunnel runs no shell",
    "V": "printing the version: run nbtunnel -V, or read nbtunnel.__version__",
    "W": "stdio forwarding; use -L",
    "w": "tun device forwarding",
    "X": "X11 forwarding",
    "x": "X11 forwarding is never on",
    "Y": "X11 forwarding",
    "y": "syslog logging",
    "1": "SSH protocol 1",
    "2": "choosing the protocol; SSH 2 is the only one",
}

_YES_NO = ("yes", "no")

# Keys whose value is one word from a fixed list; the stored value is the
# list's spelling, so "YES" and "yes" compare equal afterwards.
CHOICES: dict[str, tuple[str, ...]] = {
    "StrictHostKeyChecking": ("yes", "no", "accept-new", "ask", "off"),
    "ExitOnForwardFailure": _YES_NO,
    "IdentitiesOnly": _YES_NO,
    "GatewayPorts": _YES_NO,
    "PasswordAuthentication": _YES_NO,
    "KbdInteractiveAuthentication": _YES_NO,
    "PubkeyAuthentication": _YES_NO,
    "HashKnownHosts": _YES_NO,
    "BatchMode": _YES_NO,
    "Compression": _YES_NO,
    "AddressFamily": ("any", "inet", "inet6"),
    "LogLevel": (
        "QUIET",
        "FATAL",
        "ERROR",
        "INFO",
        "VERBOSE",
        "DEBUG",
        "DEBUG1",
        "DEBUG2",
        "DEBUG3",
    ),
    "Reconnect": _YES_NO,
    "FastPath": _YES_NO,
    "OwnerOnly": ("yes", "no", "auto"),
    "ReusePort": _YES_NO,
}

COUNTS = (
    "ServerAliveInterval",
    "ServerAliveCountMax",
    "ConnectTimeout",
    "NumberOfPasswordPrompts",
    "ReconnectMaxDelay",
    "ReconnectAttempts",
)

SUPPORTED_OPTIONS: tuple[str, ...] = (
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
    "KbdInteractiveAuthentication",
    "PubkeyAuthentication",
    "PreferredAuthentications",
    "NumberOfPasswordPrompts",
    "CertificateFile",
    "IdentityAgent",
    "ProxyCommand",
    "HashKnownHosts",
    "GlobalKnownHostsFile",
    "BatchMode",
    "Compression",
    "AddressFamily",
    "Ciphers",
    "HostName",
    "LogLevel",
    "LocalForward",
    "RemoteForward",
    "DynamicForward",
    "Reconnect",
    "ReconnectMaxDelay",
    "ReconnectAttempts",
    "FastPath",
    "OwnerOnly",
    "ReusePort",
)

_CANONICAL = {key.lower(): key for key in SUPPORTED_OPTIONS}


def canonical_key(key: str) -> str | None:
    """The canonical spelling of a supported option, or None."""
    return _CANONICAL.get(key.lower())


def is_secret(key: str) -> bool:
    """Whether a key names a secret (a password or a passphrase)."""
    lowered = key.lower()
    # No ssh keyword holds one: PasswordAuthentication and
    # NumberOfPasswordPrompts say how to ask, ProxyUseFdpass how to dial.
    return "pass" in lowered and lowered not in _CANONICAL and not is_ssh_keyword(key)


_DIGITS = re.compile(r"[0-9]+")
_HOSTNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_DOTTED_QUAD = re.compile(r"[0-9]+(?:\.[0-9]+){3}")
_SCOPE = re.compile(r"[A-Za-z0-9_.-]+")
_CIPHER = re.compile(r"[A-Za-z0-9][A-Za-z0-9@._+-]*")
MAX_COUNT = 10**9
HOST_RULE = "use a host name, an IPv4 address or an IPv6 address in [brackets]"
USER_RULE = "use a user name without whitespace, '/' or ','"


def q(text: str) -> str:
    # Plain single quotes, not repr(): the quoted part must read exactly as typed.
    return f"'{text}'"


def forms_of(flag: str) -> str:
    lines = [f"  {flag} {form}" for form in ACCEPTED_FORMS[flag]]
    return "accepted forms:\n" + "\n".join(lines)


def has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def has_space(text: str) -> bool:
    return has_control(text) or any(c.isspace() for c in text)


def decimal(text: str, low: int, high: int) -> int | None:
    """``text`` as a plain decimal in ``low..high``, else None."""
    if _DIGITS.fullmatch(text) is None:
        return None
    digits = text.lstrip("0") or "0"
    # Bounded before int(): a thousand-digit "port" must not cost anything.
    if len(digits) > len(str(high)):
        return None
    number = int(digits)
    return number if low <= number <= high else None


def is_ipv6(text: str) -> bool:
    address, percent, scope = text.partition("%")
    if percent and _SCOPE.fullmatch(scope) is None:
        return False
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    return True


def is_network_host(text: str) -> bool:
    """A host in a forward: a DNS name, an IPv4 or an IPv6 address."""
    if ":" in text:
        return is_ipv6(text)
    if len(text) > 253 or _HOSTNAME.fullmatch(text) is None:
        return False
    if _DOTTED_QUAD.fullmatch(text):
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            return False
    return True


def _is_word(text: str, forbidden: str) -> bool:
    # "," separates -J hops, and a leading "-" would read as an option.
    return (
        bool(text)
        and not text.startswith("-")
        and not has_space(text)
        and not any(c in forbidden for c in text)
    )


def is_alias(text: str) -> bool:
    """A destination host: an IPv6 address or any ``~/.ssh/config`` alias."""
    return is_ipv6(text) if ":" in text else _is_word(text, "@/[],")


def is_user(text: str) -> bool:
    return _is_word(text, "/,")


def spec_error(
    what: str, shown: str, reason: str, bad: str = "", flag: str = ""
) -> SpecError:
    """The SpecError for ``shown``; ``bad`` is the part to blame, if narrower."""
    message = f"bad {what} {q(shown)}: {reason}"
    if flag:
        message += "\n" + forms_of(flag)
    return SpecError(message, text=bad or shown, reason=reason)


def cipher_names(value: str, where: str) -> tuple[str, ...]:
    names = tuple(value.split(","))
    for name in names:
        if not name:
            raise spec_error(where, value, "a cipher name is empty")
        if _CIPHER.fullmatch(name) is None:
            raise spec_error(where, value, f"bad cipher name {q(name)}", name)
    return names


def path_value(value: str, flag: str) -> str:
    if not value or has_control(value):
        reason = "a path must be non-empty, without control characters"
        raise spec_error(f"{flag} path", value, reason)
    return value


def option_value(key: str, value: str) -> str:
    """The stored form of a ``-o`` value that stays in ``options``."""

    def error(rule: str) -> SpecError:
        message = f"option {q(key)} does not take {q(value)}: {rule}"
        return SpecError(message, text=value, reason=rule)

    if key in CHOICES:
        allowed = CHOICES[key]
        for choice in allowed:
            if value.lower() == choice.lower():
                return choice
        listed = f"use one of {', '.join(allowed)}"
        guess = closest(value, allowed)
        raise error(f"did you mean {guess}? ({listed})" if guess else listed)
    if key in COUNTS or key == "Port":
        low, high = (1, 65535) if key == "Port" else (0, MAX_COUNT)
        number = decimal(value, low, high)
        if number is None:
            raise error(f"use a whole number from {low} to {high}")
        return str(number)
    if key == "User" and not is_user(value):
        raise error(USER_RULE)
    if key == "HostName" and not is_alias(value):
        raise error("use a host name or an IP address")
    if key == "Ciphers":
        return ",".join(cipher_names(value, "Ciphers"))
    if has_control(value):
        raise error("use a value without control characters")
    return value
