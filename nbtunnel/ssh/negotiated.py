"""What the SSH handshake agreed, in ``ssh -v``'s words (for a tunnel's trace).

paramiko keeps the agreed ciphers, MACs and compression on the transport,
but not the key exchange: that one is worked out again from the server's
KEXINIT (kept by the gate's Transport) as paramiko chose it, the first of
ours that the server offers.  Whatever cannot be read is said as unknown.
"""

from __future__ import annotations

import paramiko

from .._paramiko.transport import Transport
from .printable import escaped_lines
from .trace import Trace

# The SSH identification line: "SSH-protoversion-softwareversion comments".
_PREFIX = "SSH-"


def versions(transport: Transport, trace: Trace) -> None:
    """The two identification lines, as soon as the server's is known."""
    if not trace.wants(1):
        return
    trace(1, "Local version string %s", transport.local_version)
    remote = transport.remote_version
    if remote.startswith(_PREFIX):
        protocol, _, software = remote[len(_PREFIX) :].partition("-")
        trace(
            1, "Remote protocol version %s, remote software version %s",
            protocol, software,
        )  # fmt: skip
    elif remote:
        trace(1, "Remote version string %s", remote)


def offered(transport: Transport, trace: Trace) -> None:
    """What we offer (-vv), before the handshake."""
    options = transport.get_security_options()
    trace(2, "ciphers offered: %s", ",".join(options.ciphers))
    trace(2, "host key algorithms offered: %s", ",".join(transport.preferred_keys))
    trace(2, "key exchanges offered: %s", ",".join(transport.preferred_kex))


def kex(transport: Transport) -> str:
    """The key exchange paramiko agreed on, or "unknown"."""
    try:
        message = paramiko.Message(transport.server_kexinit)
        message.get_bytes(16)  # the cookie
        theirs = message.get_list()
    except Exception:  # noqa: BLE001 - a KEXINIT we cannot read says nothing
        return "unknown"
    return next((k for k in transport.preferred_kex if k in theirs), "unknown")


def agreed(transport: Transport, trace: Trace) -> None:
    """The key exchange, host key algorithm, ciphers, MACs and compression."""
    if not trace.wants(1):
        return
    trace(1, "kex: algorithm: %s", kex(transport))
    trace(1, "kex: host key algorithm: %s", transport.host_key_type or "unknown")
    # Public attributes the stubs do not list; "unknown" if one goes.
    ways = (
        ("server->client", "remote_cipher", "remote_mac", "remote_compression"),
        ("client->server", "local_cipher", "local_mac", "local_compression"),
    )
    for way, *names in ways:
        cipher, mac, compression = (getattr(transport, n, None) for n in names)
        if cipher and ("-gcm@" in cipher or "poly1305" in cipher):
            # An AEAD cipher authenticates itself: paramiko still agrees a
            # MAC it does not use; ssh says "<implicit>".
            mac = None
        trace(
            1, "kex: %s cipher: %s MAC: %s compression: %s",
            way, cipher or "unknown", mac or "<implicit>", compression or "none",
        )  # fmt: skip


def banner(transport: paramiko.Transport, trace: Trace) -> None:
    """The server's pre-login banner (sshd's ``Banner``), if it sent one."""
    if not trace.wants(1):
        return
    text = transport.get_banner()
    if text:
        # Each of its lines a line of ours, escaped: the server wrote it.
        for line in escaped_lines(text):
            trace(1, "banner: %s", line)
