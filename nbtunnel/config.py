"""Resolve a parsed command line into the settings of one SSH connection."""

from __future__ import annotations

import dataclasses
import getpass
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .spec import TunnelSpec

StrictMode = Literal["ask", "yes", "accept-new", "no"]

# Asks a person: prompt(text, secret) -> their answer, or None if nobody can
# answer (no terminal, a frontend without input) or they declined.
Prompt = Callable[[str, bool], "str | None"]
DEFAULT_PORT = 22
# OpenSSH's default identity files, in the order ssh(1) tries them.
DEFAULT_IDENTITY_NAMES = ("id_ed25519", "id_ecdsa", "id_rsa")


@dataclass(frozen=True)
class ConnectSettings:
    """Everything the engine needs to open one SSH connection.

    Built in the caller (where ``~``, ``$HOME`` and ``SSH_AUTH_SOCK`` mean
    what the user expects) and sent to the engine as plain data.
    """

    host: str
    port: int = DEFAULT_PORT
    user: str = ""
    identities: tuple[str, ...] = ()
    identities_only: bool = False
    agent_socket: str | None = None
    known_hosts: str = ""
    strict_host_key_checking: StrictMode = "ask"
    connect_timeout: float | None = None
    address_family: Literal["any", "inet", "inet6"] = "any"
    compression: bool = False
    ciphers: tuple[str, ...] = ()
    server_alive_interval: int = 0
    gateway_ports: bool = False
    exit_on_forward_failure: bool = True
    # -J / ProxyJump: the hops in order, each reached through the one before.
    jumps: tuple[ConnectSettings, ...] = ()

    @property
    def known_hosts_name(self) -> str:
        """The name this server has in ``known_hosts`` (``[host]:port``)."""
        if self.port == DEFAULT_PORT:
            return self.host
        return f"[{self.host}]:{self.port}"

    @property
    def target(self) -> str:
        """``user@host:port`` for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the engine protocol."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConnectSettings:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        for key in ("identities", "ciphers"):
            data[key] = tuple(data.get(key, ()))
        data["jumps"] = tuple(cls.from_dict(j) for j in data.get("jumps", ()))
        return cls(**data)


def _yes(value: str | None) -> bool:
    return value is not None and value.lower() == "yes"


def _strict_mode(value: str | None) -> StrictMode:
    # "ask" is OpenSSH's default: a person is asked about an unknown host
    # when one can answer; when nobody can, it acts as "yes" (refuses).
    if value in (None, "ask"):
        return "ask"
    if value == "yes":
        return "yes"
    if value in ("no", "off"):
        return "no"
    return "accept-new"


def resolve(spec: TunnelSpec, *, home: str | None = None) -> ConnectSettings:
    """Turn a parsed line into connection settings (as ssh(1) would read it).

    Command-line options win over ``-o`` options, which win over defaults.
    ``~/.ssh/config`` is not read yet: a config alias is used as a host name.
    """
    home = home if home is not None else os.path.expanduser("~")

    def expand(path: str) -> str:
        if path == "~" or path.startswith("~/"):
            path = home + path[1:]
        return os.path.abspath(path)

    identities = [expand(p) for p in spec.identities]
    identity_option = spec.option("IdentityFile")
    if identity_option is not None:
        identities.append(expand(identity_option))
    if not identities:
        for name in DEFAULT_IDENTITY_NAMES:
            candidate = os.path.join(home, ".ssh", name)
            if os.path.exists(candidate):
                identities.append(candidate)

    timeout = spec.option("ConnectTimeout")
    alive = spec.option("ServerAliveInterval")
    family = spec.address_family
    family_option = spec.option("AddressFamily")
    if family == "any" and family_option in ("inet", "inet6"):
        family = family_option  # type: ignore[assignment]
    ciphers = spec.ciphers
    cipher_option = spec.option("Ciphers")
    if not ciphers and cipher_option:
        ciphers = tuple(c for c in cipher_option.split(",") if c)
    gateway_option = spec.option("GatewayPorts")
    # As ssh: the command line's -i and -o are the final host's; each jump
    # host gets its own defaults (its ~/.ssh/config section, once read).
    jumps = (
        ()
        if spec.jump_none
        else tuple(resolve(TunnelSpec(destination=hop), home=home) for hop in spec.jump)
    )

    return ConnectSettings(
        host=spec.option("HostName") or spec.destination.host,
        port=spec.effective_port or DEFAULT_PORT,
        user=spec.user or getpass.getuser(),
        identities=tuple(dict.fromkeys(identities)),
        identities_only=_yes(spec.option("IdentitiesOnly")),
        agent_socket=os.environ.get("SSH_AUTH_SOCK") or None,
        known_hosts=expand(
            spec.option("UserKnownHostsFile")
            or os.path.join("~", ".ssh", "known_hosts")
        ),
        strict_host_key_checking=_strict_mode(spec.option("StrictHostKeyChecking")),
        connect_timeout=float(timeout) if timeout and int(timeout) > 0 else None,
        address_family=family,
        compression=spec.compression or _yes(spec.option("Compression")),
        ciphers=ciphers,
        server_alive_interval=int(alive) if alive else 0,
        gateway_ports=spec.gateway_ports or _yes(gateway_option),
        # nbtunnel's default is "yes": a notebook user wants the call to fail.
        exit_on_forward_failure=spec.option("ExitOnForwardFailure") != "no",
        jumps=jumps,
    )
