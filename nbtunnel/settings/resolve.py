"""Resolve a parsed command line and the ssh_config files into the settings of one
SSH connection (and the forwards the config adds)."""

from __future__ import annotations

import dataclasses
import getpass
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import SpecError
from ..grammar.destinations import Destination, parse_destination
from ..grammar.forwards import ForwardSpec, bracketed, parse_forward
from ..grammar.spec import TunnelSpec
from ..platform import agent as platform_agent
from ..platform import paths
from . import ssh_config

StrictMode = Literal["ask", "yes", "accept-new", "no"]
_OWNER_ONLY: dict[str, Literal["auto", "yes", "no"]] = {"yes": "yes", "no": "no"}

# Asks a person: prompt(text, secret) -> their answer, or None if nobody can
# answer (no terminal, a frontend without input) or they declined.
Prompt = Callable[[str, bool], "str | None"]
DEFAULT_PORT = 22
# ServerAliveInterval x ServerAliveCountMax: a dead server is noticed after
# about a minute (interval x (count + 1)), as quickly as a flaky Wi-Fi allows
# without false alarms.
DEFAULT_ALIVE_INTERVAL = 15
DEFAULT_ALIVE_COUNT = 3
DEFAULT_RECONNECT_MAX_DELAY = 30
MAX_JUMPS = 8
# ssh(1)'s PreferredAuthentications, less the methods nbtunnel lacks
# (gssapi-with-mic, hostbased).
AUTH_METHODS = ("publickey", "keyboard-interactive", "password")
# /etc/ssh, or %PROGRAMDATA%\ssh on Windows.
GLOBAL_KNOWN_HOSTS = paths.GLOBAL_KNOWN_HOSTS
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
    certificates: tuple[str, ...] = ()
    agent_socket: str | None = None
    auth_methods: tuple[str, ...] = AUTH_METHODS
    password_prompts: int = 3
    # No questions at all (BatchMode yes): what would be asked fails instead.
    batch_mode: bool = False
    # Where a new host key is written; every file of known_hosts_files is read.
    known_hosts: str = ""
    known_hosts_files: tuple[str, ...] = ()
    hash_known_hosts: bool = False
    strict_host_key_checking: StrictMode = "ask"
    connect_timeout: float | None = None
    address_family: Literal["any", "inet", "inet6"] = "any"
    compression: bool = False
    ciphers: tuple[str, ...] = ()
    # Dead-peer detection, on by default (ssh's default is off): a tunnel
    # left open in a notebook should notice a server that went away.
    server_alive_interval: int = DEFAULT_ALIVE_INTERVAL
    server_alive_count_max: int = DEFAULT_ALIVE_COUNT
    # Reconnect a lost connection, waiting up to reconnect_max_delay seconds
    # between tries, for reconnect_attempts tries (0: until stopped).
    reconnect: bool = True
    reconnect_max_delay: int = DEFAULT_RECONNECT_MAX_DELAY
    reconnect_attempts: int = 0
    gateway_ports: bool = False
    exit_on_forward_failure: bool = True
    # -J / ProxyJump: the hops in order, each reached through the one before.
    jumps: tuple[ConnectSettings, ...] = ()
    # ProxyCommand, its tokens expanded: run by a shell, spoken to on stdio.
    proxy_command: str | None = None
    # nbtunnel's FastPath: its speed-ups over paramiko (batched AES-GCM
    # packets, the relay's splice); "no" leaves every packet to paramiko.
    fast_path: bool = True
    # nbtunnel's OwnerOnly for -L/-D: "auto", "yes" or "no" (forward/owner.py),
    # and ReusePort: this user's other processes may listen on its ports too.
    owner_only: Literal["auto", "yes", "no"] = "auto"
    reuse_port: bool = False
    # The ssh_config files read and the lines that applied, for -vv; where
    # the settings came from, not what they are (so, not compared).
    config_notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def known_hosts_name(self) -> str:
        """The name this server has in ``known_hosts`` (``[host]:port``)."""
        return self.host if self.port == DEFAULT_PORT else f"[{self.host}]:{self.port}"

    @property
    def target(self) -> str:
        """``user@host:port`` for messages."""
        return f"{self.user}@{bracketed(self.host)}:{self.port}"

    def to_dict(self) -> dict[str, Any]:  # plain data for the engine protocol
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConnectSettings:  # to_dict's inverse
        data = dict(data)
        for key in _TUPLES:
            data[key] = tuple(data.get(key, ()))
        data["jumps"] = tuple(cls.from_dict(j) for j in data.get("jumps", ()))
        return cls(**data)


_TUPLES: tuple[str, ...] = ("identities", "ciphers", "certificates", "auth_methods")
_TUPLES += ("known_hosts_files", "config_notes")


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


def _host_config(spec: TunnelSpec, home: str) -> ssh_config.HostConfig:
    return ssh_config.lookup(
        ssh_config.config_files(spec, home),
        spec.destination.host,
        user=spec.login or spec.destination.user,
        local_user=getpass.getuser(),
        home=home,
    )


def forwards_from_config(
    spec: TunnelSpec, *, home: str | None = None
) -> tuple[ForwardSpec, ...]:
    """The host's ``LocalForward``, ``RemoteForward`` and ``DynamicForward`` lines."""
    home = home if home is not None else os.path.expanduser("~")
    cfg = _host_config(spec, home)
    found: list[ForwardSpec] = []
    for key, flag in (
        ("LocalForward", "-L"),
        ("RemoteForward", "-R"),
        ("DynamicForward", "-D"),
    ):
        for value in cfg.all(key):
            # The config separates the two ends with a space, -L with ":".
            found.append(parse_forward(flag, ":".join(value.split())))
    return tuple(found)


def resolve(
    spec: TunnelSpec, *, home: str | None = None, _depth: int = 0
) -> ConnectSettings:
    """Turn a parsed line into connection settings, as ssh(1) would read them.

    The command line wins over ``-o`` options, which win over the ssh_config
    files (first match wins), which win over defaults.
    """
    home = home if home is not None else os.path.expanduser("~")
    if _depth > MAX_JUMPS:
        raise SpecError(
            f"ProxyJump for '{spec.destination.host}' goes more than {MAX_JUMPS} "
            "hops deep; does a host's ProxyJump lead back to itself?",
            text=spec.destination.host,
        )
    cfg = _host_config(spec, home)

    def option(key: str) -> str | None:
        given = spec.option(key)
        return given if given is not None else cfg.get(key)

    def number(key: str, value: str) -> int:
        # The command line's numbers were checked by the grammar; a config
        # file's were not.
        try:
            return int(value)
        except ValueError:
            where = ", ".join(cfg.files) or "the command line"
            raise SpecError(
                f"{key} {value!r} is not a number (in {where})", text=value
            ) from None

    port_option = cfg.get("Port")
    port = spec.effective_port or (
        number("Port", port_option) if port_option else DEFAULT_PORT
    )
    user = spec.user or cfg.get("User") or getpass.getuser()
    table = ssh_config.tokens(cfg, port=port, user=user, home=home)
    hostname = option("HostName")
    host = spec.destination.host
    if hostname:
        host = ssh_config.expand(hostname, {**table, "h": host}, home)
        table["h"] = host

    def path(value: str) -> str:
        return os.path.abspath(ssh_config.expand(value, table, home))

    identities = [path(p) for p in spec.identities]
    identity_option = spec.option("IdentityFile")
    if identity_option is not None:
        identities.append(path(identity_option))
    identities += [path(p) for p in cfg.all("IdentityFile")]
    if not identities:
        for name in DEFAULT_IDENTITY_NAMES:
            candidate = os.path.join(home, ".ssh", name)
            if os.path.exists(candidate):
                identities.append(candidate)

    timeout_option = option("ConnectTimeout")
    timeout = number("ConnectTimeout", timeout_option) if timeout_option else 0
    alive = option("ServerAliveInterval")
    alive_count = option("ServerAliveCountMax")
    max_delay = option("ReconnectMaxDelay")
    attempts = option("ReconnectAttempts")
    family = spec.address_family
    family_option = option("AddressFamily")
    if family == "any" and family_option in ("inet", "inet6"):
        family = family_option  # type: ignore[assignment]
    ciphers = spec.ciphers
    cipher_option = option("Ciphers")
    if not ciphers and cipher_option:
        ciphers = tuple(c for c in cipher_option.split(",") if c)
    certificates = [path(p) for p in _given(spec, "CertificateFile")]
    certificates += [path(p) for p in cfg.all("CertificateFile")]
    user_files = _files(option("UserKnownHostsFile"), path)
    if user_files is None:
        user_files = [
            os.path.join(home, ".ssh", "known_hosts"),
            os.path.join(home, ".ssh", "known_hosts2"),
        ]
    global_files = _files(option("GlobalKnownHostsFile"), path)
    if global_files is None:
        global_files = list(GLOBAL_KNOWN_HOSTS)
    prompts = option("NumberOfPasswordPrompts")
    jumps, proxy_command = _proxy(spec, cfg, home, _depth)

    return ConnectSettings(
        host=host,
        port=port,
        user=user,
        identities=tuple(dict.fromkeys(identities)),
        identities_only=_yes(option("IdentitiesOnly")),
        certificates=tuple(dict.fromkeys(certificates)),
        agent_socket=_agent(option("IdentityAgent"), path),
        auth_methods=_auth_methods(option),
        password_prompts=number("NumberOfPasswordPrompts", prompts) if prompts else 3,
        batch_mode=_yes(option("BatchMode")),
        # ssh allows several files; the first is the one written to.
        known_hosts=user_files[0] if user_files else os.devnull,
        known_hosts_files=tuple(
            user_files
            + (
                global_files
                if option("GlobalKnownHostsFile")
                else list(GLOBAL_KNOWN_HOSTS)
            )
        ),
        hash_known_hosts=_yes(option("HashKnownHosts")),
        strict_host_key_checking=_strict_mode(option("StrictHostKeyChecking")),
        connect_timeout=float(timeout) if timeout > 0 else None,
        address_family=family,
        compression=spec.compression or _yes(option("Compression")),
        ciphers=ciphers,
        server_alive_interval=number("ServerAliveInterval", alive)
        if alive
        else DEFAULT_ALIVE_INTERVAL,
        server_alive_count_max=number("ServerAliveCountMax", alive_count)
        if alive_count
        else DEFAULT_ALIVE_COUNT,
        reconnect=(option("Reconnect") or "yes").lower() != "no",
        fast_path=(option("FastPath") or "yes").lower() != "no",
        owner_only=_OWNER_ONLY.get((option("OwnerOnly") or "").lower(), "auto"),
        reuse_port=_yes(option("ReusePort")),
        reconnect_max_delay=number("ReconnectMaxDelay", max_delay)
        if max_delay
        else DEFAULT_RECONNECT_MAX_DELAY,
        reconnect_attempts=number("ReconnectAttempts", attempts) if attempts else 0,
        gateway_ports=spec.gateway_ports or _yes(option("GatewayPorts")),
        # nbtunnel's default is "yes": a notebook user wants the call to fail.
        exit_on_forward_failure=option("ExitOnForwardFailure") != "no",
        jumps=jumps,
        proxy_command=ssh_config.expand(proxy_command, table, home)
        if proxy_command
        else None,
        config_notes=tuple(cfg.notes),
    )


def _given(spec: TunnelSpec, key: str) -> list[str]:
    """Every ``-o key=...`` of the command line, in order."""
    return [value for name, value in spec.options if name == key]


def _files(value: str | None, path: Callable[[str], str]) -> list[str] | None:
    """The files of a ``*KnownHostsFile`` option; None if it is not set
    (``none`` means no file at all)."""
    if value is None:
        return None
    try:
        # Split as ssh's argv_split(): quotes keep a path with blanks whole.
        paths = shlex.split(value)
    except ValueError as exc:
        raise SpecError(f"known hosts files {value!r}: {exc}", text=value) from None
    return [path(p) for p in paths if p.lower() != "none"]


def _agent(value: str | None, path: Callable[[str], str]) -> str | None:
    """``IdentityAgent``: a socket path, ``none``, or ``SSH_AUTH_SOCK``/``$VAR``."""
    if value is None or value == "SSH_AUTH_SOCK":
        # The caller's SSH_AUTH_SOCK; Windows' own agent where there are no
        # unix sockets.
        return platform_agent.default_path()
    if value.lower() == "none":
        return None
    if value.startswith("$"):
        return os.environ.get(value[1:]) or None
    return path(value)


def _auth_methods(option: Callable[[str], str | None]) -> tuple[str, ...]:
    preferred = option("PreferredAuthentications")
    methods = (
        [m for m in preferred.split(",") if m in AUTH_METHODS]
        if preferred
        else list(AUTH_METHODS)
    )
    for method, key in (
        ("publickey", "PubkeyAuthentication"),
        ("keyboard-interactive", "KbdInteractiveAuthentication"),
        ("password", "PasswordAuthentication"),
    ):
        if option(key) == "no" and method in methods:
            methods.remove(method)
    return tuple(methods)


def _proxy(
    spec: TunnelSpec, cfg: ssh_config.HostConfig, home: str, depth: int
) -> tuple[tuple[ConnectSettings, ...], str | None]:
    """The jump hosts, or the ProxyCommand: whichever ssh would use."""
    if spec.jump_none:
        return (), None
    command = spec.option("ProxyCommand")
    if spec.jump:
        if command is not None and command.lower() != "none":
            raise SpecError(
                "-J (or ProxyJump) and ProxyCommand cannot both be given; "
                "choose one way to reach the host",
                text="ProxyCommand",
            )
        return _jumps(spec.jump, spec, home, depth), None
    if command is None:
        # In a config file the first of ProxyJump and ProxyCommand wins.
        for key in cfg.values:
            if key in ("proxyjump", "proxycommand"):
                value = cfg.get(key) or "none"
                if value.lower() == "none":
                    return (), None
                if key == "proxycommand":
                    command = value
                    break
                hops = tuple(parse_destination(h) for h in value.split(","))
                return _jumps(hops, spec, home, depth), None
    if command is None or command.lower() == "none":
        return (), None
    return (), command


def _jumps(
    hops: tuple[Destination, ...], spec: TunnelSpec, home: str, depth: int
) -> tuple[ConnectSettings, ...]:
    # As ssh: the command line's -i and -o are the final host's; each jump
    # host is resolved on its own, with its own section of the config.
    return tuple(
        resolve(
            TunnelSpec(destination=hop, config_file=spec.config_file),
            home=home,
            _depth=depth + 1,
        )
        for hop in hops
    )
