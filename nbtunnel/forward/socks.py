"""The server side of a SOCKS4, SOCKS4a and SOCKS5 handshake, for a ``-D`` forward.

Like ssh's dynamic forwarding, the proxy offers only CONNECT and no
authentication; the target is handed to the SSH server to open, so a domain
name is passed on unresolved. The parser is pure (no sockets, threads or
clocks): the caller feeds it the client's bytes and sends what it returns,
which is why it is tested from tables of bytes, split at every point.
"""

from __future__ import annotations

import codecs
import ipaddress
import struct
from dataclasses import dataclass
from typing import Literal

Reason = Literal[
    "general",
    "not_allowed",
    "network_unreachable",
    "host_unreachable",
    "refused",
    "ttl_expired",
    "command",
    "address_type",
]

# RFC 1928, section 6.
_SOCKS5_CODES: dict[Reason, int] = {
    "general": 1,
    "not_allowed": 2,
    "network_unreachable": 3,
    "host_unreachable": 4,
    "refused": 5,
    "ttl_expired": 6,
    "command": 7,
    "address_type": 8,
}
_SOCKS5_COMMANDS = {1: "CONNECT", 2: "BIND", 3: "UDP ASSOCIATE"}
_SOCKS4_COMMANDS = {1: "CONNECT", 2: "BIND"}
# SOCKS4 has one failure code, and neither version's clients read the bound
# address of a CONNECT, so the replies carry zeros.
_SOCKS4_SUCCESS = b"\x00\x5a" + bytes(6)
_SOCKS4_REJECT = b"\x00\x5b" + bytes(6)
_NO_ACCEPTABLE_METHOD = b"\x05\xff"
_METHOD_NO_AUTH = b"\x05\x00"
# A DNS name fits in 255 bytes; the cap also bounds what a client that never
# sends the NUL can make the proxy hold.
_MAX_NAME = 255


class SocksError(Exception):
    """A handshake the proxy refuses.

    ``reply`` is what to send the client before closing (b"" when no answer
    is possible, e.g. an unknown version byte); ``reason`` the Reason.
    """

    def __init__(self, message: str, reply: bytes, reason: Reason) -> None:
        super().__init__(message)
        self.reply = reply
        self.reason = reason


@dataclass(frozen=True)
class Request:
    """A complete CONNECT request."""

    version: Literal[4, 5]
    host: str
    port: int
    address_type: Literal["ipv4", "ipv6", "domain"]

    @property
    def target(self) -> str:
        """``host:port``, with an IPv6 address in brackets."""
        if self.address_type == "ipv6":
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def _socks5_reply(code: int) -> bytes:
    return bytes([5, code, 0, 1]) + bytes(6)


def _check_name(raw: bytes, complete: bool, what: str, reply: bytes) -> str:
    """Decode a (possibly still arriving) name, failing as soon as it must fail."""
    if 0 in raw:
        raise SocksError(f"{what} contains a NUL byte", reply, "general")
    try:
        # An incremental decoder rejects most bad UTF-8 at its first byte,
        # before the rest of the name arrives.
        name: str = codecs.getincrementaldecoder("utf-8")().decode(raw, final=complete)
    except UnicodeDecodeError:
        raise SocksError(f"{what} is not valid UTF-8", reply, "general") from None
    return name


class Handshake:
    """Feed it what the client sends; it says what to answer."""

    def __init__(self) -> None:
        self.request: Request | None = None
        self._version: Literal[4, 5] | None = None
        self._greeted = False
        self._failed = False
        # The message being read; every message is bounded, so this is too.
        self._buf = bytearray()
        self._rest = bytearray()

    @property
    def rest(self) -> bytes:
        """Bytes received after the request, to pass on to the target."""
        return bytes(self._rest)

    def feed(self, data: bytes) -> bytes:
        """Consume bytes; return what to send the client now (b"\\x05\\x00" or b"").

        Raises SocksError on bad or unsupported input; its reply includes any
        answer this same call had produced, so nothing is lost when a client
        pipelines its greeting and a bad request. Feeding after ``request``
        is set just appends to ``rest``.
        """
        if self._failed:
            raise RuntimeError("the SOCKS handshake has already failed")
        if self.request is not None:
            self._rest += data
            return b""
        self._buf += data
        answer = b""
        try:
            while (step := self._step()) is not None:
                answer += step
        except SocksError as e:
            self._failed = True
            e.reply = answer + e.reply
            raise
        return answer

    def success(self) -> bytes:
        """The reply once the target is connected."""
        return _SOCKS4_SUCCESS if self._connect_version() == 4 else _socks5_reply(0)

    def failure(self, reason: Reason) -> bytes:
        """The reply for a failed CONNECT."""
        if self._connect_version() == 4:
            return _SOCKS4_REJECT
        return _socks5_reply(_SOCKS5_CODES[reason])

    def _connect_version(self) -> Literal[4, 5]:
        if self.request is None:
            raise RuntimeError("no SOCKS CONNECT request has been read yet")
        return self.request.version

    def _step(self) -> bytes | None:
        """Read one message from the buffer: its answer, or None when done or short."""
        buf = self._buf
        if not buf or self.request is not None:
            return None
        if self._version is None:
            first = buf[0]
            if first not in (4, 5):
                hint = (
                    "; an HTTP client pointed at a SOCKS proxy?"
                    if 0x41 <= first <= 0x5A
                    else ""
                )
                raise SocksError(
                    f"not a SOCKS request (first byte {first:#04x}{hint})",
                    b"",
                    "general",
                )
            self._version = 5 if first == 5 else 4
        if self._version == 4:
            return self._socks4()
        if not self._greeted:
            return self._socks5_greeting()
        return self._socks5_request()

    def _finish(self, request: Request, length: int) -> bytes:
        self.request = request
        self._rest += self._buf[length:]
        self._buf.clear()
        return b""

    def _socks5_greeting(self) -> bytes | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        n = buf[1]
        if n == 0:
            raise SocksError(
                "SOCKS5 greeting offers no authentication methods",
                _NO_ACCEPTABLE_METHOD,
                "not_allowed",
            )
        methods = bytes(buf[2 : 2 + n])
        if len(methods) < n:
            return None
        if 0 not in methods:
            offered = ", ".join(f"{m:#04x}" for m in methods)
            raise SocksError(
                f"SOCKS5 client offers methods {offered} but not 0x00 (no "
                "authentication), the only one this proxy accepts",
                _NO_ACCEPTABLE_METHOD,
                "not_allowed",
            )
        del self._buf[: 2 + n]
        self._greeted = True
        return _METHOD_NO_AUTH

    def _socks5_request(self) -> bytes | None:
        buf = self._buf
        general = _socks5_reply(_SOCKS5_CODES["general"])
        if buf[0] != 5:
            raise SocksError(
                f"SOCKS5 request has version {buf[0]}, not 5", general, "general"
            )
        if len(buf) < 2:
            return None
        if buf[1] != 1:
            name = _SOCKS5_COMMANDS.get(buf[1], "unknown")
            raise SocksError(
                f"SOCKS5 command {buf[1]} ({name}) is not supported; only CONNECT",
                _socks5_reply(_SOCKS5_CODES["command"]),
                "command",
            )
        # The reserved byte is ignored, as ssh does.
        if len(buf) < 4:
            return None
        atyp = buf[3]
        address_type: Literal["ipv4", "ipv6", "domain"]
        if atyp == 1:
            address_type, start, length = "ipv4", 4, 4
        elif atyp == 4:
            address_type, start, length = "ipv6", 4, 16
        elif atyp == 3:
            if len(buf) < 5:
                return None
            address_type, start, length = "domain", 5, buf[4]
            if length == 0:
                raise SocksError("SOCKS5 domain name is empty", general, "general")
            raw = bytes(buf[start : start + length])
            host = _check_name(raw, len(raw) == length, "SOCKS5 domain name", general)
        else:
            raise SocksError(
                f"SOCKS5 address type {atyp} is not supported; only 1 (IPv4), "
                "3 (domain name) and 4 (IPv6)",
                _socks5_reply(_SOCKS5_CODES["address_type"]),
                "address_type",
            )
        end = start + length
        if len(buf) < end + 2:
            return None
        (port,) = struct.unpack_from("!H", buf, end)
        if port == 0:
            raise SocksError("SOCKS5 request is for port 0", general, "general")
        if address_type == "ipv4":
            host = str(ipaddress.IPv4Address(bytes(buf[start:end])))
        elif address_type == "ipv6":
            host = ipaddress.IPv6Address(bytes(buf[start:end])).compressed
        return self._finish(Request(5, host, port, address_type), end + 2)

    def _socks4(self) -> bytes | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        if buf[1] != 1:
            name = _SOCKS4_COMMANDS.get(buf[1], "unknown")
            raise SocksError(
                f"SOCKS4 command {buf[1]} ({name}) is not supported; only CONNECT",
                _SOCKS4_REJECT,
                "command",
            )
        if len(buf) < 4:
            return None
        (port,) = struct.unpack_from("!H", buf, 2)
        if port == 0:
            raise SocksError("SOCKS4 request is for port 0", _SOCKS4_REJECT, "general")
        if len(buf) < 8:
            return None
        userid_end = self._socks4_field(8, "SOCKS4 user id")
        if userid_end is None:
            return None
        ip = bytes(buf[4:8])
        # SOCKS4a: an address of 0.0.0.x (x != 0) means "the name follows".
        if ip[:3] != b"\0\0\0" or ip[3] == 0:
            return self._finish(
                Request(4, str(ipaddress.IPv4Address(ip)), port, "ipv4"), userid_end + 1
            )
        host_end = self._socks4_field(userid_end + 1, "SOCKS4a host name")
        raw = bytes(buf[userid_end + 1 : host_end])
        host = _check_name(
            raw, host_end is not None, "SOCKS4a host name", _SOCKS4_REJECT
        )
        if host_end is None:
            return None
        if not host:
            raise SocksError("SOCKS4a host name is empty", _SOCKS4_REJECT, "general")
        return self._finish(Request(4, host, port, "domain"), host_end + 1)

    def _socks4_field(self, start: int, what: str) -> int | None:
        """The index of the NUL ending the field at ``start``; None if still to come."""
        end = self._buf.find(0, start, start + _MAX_NAME + 1)
        if end < 0 and len(self._buf) > start + _MAX_NAME:
            raise SocksError(
                f"{what} is longer than {_MAX_NAME} bytes",
                _SOCKS4_REJECT,
                "general",
            )
        return None if end < 0 else end
