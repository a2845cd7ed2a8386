"""The SSH wire encoding (RFC 4251 section 5), read from one buffer.

Shared by ``known_hosts`` (the key type a key blob names) and
``certificates``; each read says what it was reading, so a short or
malformed buffer is reported by the field it broke in.
"""

from __future__ import annotations

import struct


class WireReader:
    """Reads the SSH wire encoding (RFC 4251 section 5) of one buffer."""

    def __init__(self, data: bytes, context: str) -> None:
        self._data = data
        self._context = context
        self.offset = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self.offset

    def _take(self, size: int, what: str) -> bytes:
        if size > self.remaining:
            raise ValueError(f"{self._context} is truncated in its {what}")
        start = self.offset
        self.offset += size
        return self._data[start : self.offset]

    def uint32(self, what: str) -> int:
        value: int = struct.unpack(">I", self._take(4, what))[0]
        return value

    def uint64(self, what: str) -> int:
        value: int = struct.unpack(">Q", self._take(8, what))[0]
        return value

    def string(self, what: str) -> bytes:
        return self._take(self.uint32(what), what)

    def text(self, what: str) -> str:
        raw = self.string(what)
        # OpenSSH reads these with sshbuf_get_cstring(), which refuses NULs;
        # it does not insist on UTF-8, so bad bytes are replaced, not refused.
        if b"\0" in raw:
            raise ValueError(f"{self._context} has a NUL byte in its {what}")
        return raw.decode("utf-8", "replace")
