"""Hypothesis strategies for valid specs of the nbtunnel grammar (nbtunnel.grammar)."""

from __future__ import annotations

import string
from typing import get_args

from hypothesis import strategies as st
from nbtunnel.grammar.destinations import Destination
from nbtunnel.grammar.forwards import ForwardKind, ForwardSpec
from nbtunnel.grammar.spec import AddressFamily, TunnelSpec

ports = st.integers(min_value=1, max_value=65535)
listen_ports = st.integers(min_value=0, max_value=65535)

_label = st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True)
dns_names = st.one_of(
    st.sampled_from(["localhost", "db", "db.internal", "my_host", "DB-1.example.com"]),
    st.lists(_label, min_size=1, max_size=3).map(".".join),
)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.one_of(
    st.ip_addresses(v=6).map(str),
    st.sampled_from(["::1", "::", "fe80::1%eth0", "2001:db8::5"]),
)
# What a forward accepts as a host: a name or an address.
network_hosts = st.one_of(dns_names, ipv4, ipv6)
listen_hosts = st.one_of(st.none(), st.just("*"), network_hosts)

# A ~/.ssh/config alias may be nearly anything without spaces.
_alias_chars = string.ascii_letters + string.digits + "._-%+=~*!"
aliases = st.text(_alias_chars, min_size=1, max_size=12).filter(
    lambda s: not s.startswith("-")
)
destination_hosts = st.one_of(network_hosts, aliases)

_user_chars = string.ascii_letters + string.digits + "._-@:%+[\\"
users = st.text(_user_chars, min_size=1, max_size=10).filter(
    lambda s: not s.startswith("-")
)

# Every printable ASCII character but space, so that ":", "[", "]" and "\"
# exercise the bracket and escape forms; a "/" makes it a path.
_path_chars = "".join(c for c in string.printable if not c.isspace())
_path_part = st.text(_path_chars, max_size=8)
socket_paths = st.builds(lambda a, b: f"{a}/{b}", _path_part, _path_part)

# Paths as -i/-F take them: anything printable, spaces and all.
file_paths = st.text(string.printable.strip() + " ", min_size=1, max_size=12).map(
    lambda s: "~/" + s
)


@st.composite
def forward_specs(
    draw: st.DrawFn, kinds: tuple[ForwardKind, ...] = get_args(ForwardKind)
) -> ForwardSpec:
    kind = draw(st.sampled_from(kinds))
    target_host: str | None = None
    target_port: int | None = None
    target_path: str | None = None
    if kind == "local" or (kind == "remote" and draw(st.booleans())):
        if draw(st.booleans()):
            target_path = draw(socket_paths)
        else:
            target_host, target_port = draw(network_hosts), draw(ports)
    has_target = target_host is not None or target_path is not None
    # Only a forward with a target may listen on a unix socket.
    if has_target and draw(st.booleans()):
        listen_host, listen_port, listen_path = None, None, draw(socket_paths)
    else:
        listen_host, listen_port, listen_path = (
            draw(listen_hosts),
            draw(listen_ports),
            None,
        )
    return ForwardSpec(
        kind,
        listen_host,
        listen_port,
        listen_path,
        target_host,
        target_port,
        target_path,
    )


destinations = st.builds(
    Destination,
    host=destination_hosts,
    user=st.none() | users,
    port=st.none() | ports,
)
# "none" alone means no jump at all, so it is no jump host's name.
jump_hosts = st.builds(
    Destination,
    host=destination_hosts.filter(lambda h: h.lower() != "none"),
    user=st.none() | users,
    port=st.none() | ports,
)

cipher_names = st.sampled_from(
    [
        "aes128-ctr",
        "aes256-ctr",
        "aes128-gcm@openssh.com",
        "chacha20-poly1305@openssh.com",
    ]
)

option_pairs = st.one_of(
    st.tuples(
        st.just("StrictHostKeyChecking"),
        st.sampled_from(["yes", "no", "accept-new", "ask", "off"]),
    ),
    st.tuples(
        st.sampled_from(
            [
                "ExitOnForwardFailure",
                "IdentitiesOnly",
                "GatewayPorts",
                "PasswordAuthentication",
                "BatchMode",
                "Compression",
                "Reconnect",
            ]
        ),
        st.sampled_from(["yes", "no"]),
    ),
    st.tuples(
        st.sampled_from(
            ["ServerAliveInterval", "ServerAliveCountMax", "ConnectTimeout"]
        ),
        st.integers(0, 10**6).map(str),
    ),
    st.tuples(st.just("Port"), ports.map(str)),
    st.tuples(st.just("User"), users),
    st.tuples(st.just("HostName"), destination_hosts),
    st.tuples(st.just("AddressFamily"), st.sampled_from(["any", "inet", "inet6"])),
    st.tuples(st.just("LogLevel"), st.sampled_from(["QUIET", "INFO", "DEBUG3"])),
    st.tuples(st.just("Ciphers"), st.lists(cipher_names, min_size=1).map(",".join)),
    st.tuples(
        st.sampled_from(["UserKnownHostsFile", "IdentityFile"]),
        file_paths.map(str.strip),
    ),
)


@st.composite
def tunnel_specs(draw: st.DrawFn) -> TunnelSpec:
    jump_none = draw(st.booleans()) and draw(st.booleans())
    jump = () if jump_none else tuple(draw(st.lists(jump_hosts, max_size=2)))
    family: AddressFamily = draw(st.sampled_from(get_args(AddressFamily)))
    return TunnelSpec(
        destination=draw(destinations),
        forwards=tuple(draw(st.lists(forward_specs(), max_size=3))),
        port=draw(st.none() | ports),
        login=draw(st.none() | users),
        identities=tuple(draw(st.lists(file_paths, max_size=2))),
        jump=jump,
        jump_none=jump_none,
        config_file=draw(st.none() | file_paths),
        ciphers=tuple(draw(st.lists(cipher_names, max_size=2))),
        options=tuple(draw(st.lists(option_pairs, max_size=3))),
        gateway_ports=draw(st.booleans()),
        address_family=family,
        compression=draw(st.booleans()),
        verbose=draw(st.integers(0, 3)),
    )
