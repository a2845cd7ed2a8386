"""The engine's message protocol: one JSON object per line, versioned.

The caller sends requests ``{"id": N, "op": ..., ...}``; the engine answers
each with ``{"id": N, "ok": true, "result": ...}`` or ``{"id": N, "ok":
false, "error": {"type": ..., "message": ...}}``, and sends events
``{"event": ..., ...}`` at any time.  Its first line is a hello carrying
``PROTOCOL`` so that a caller never talks to an engine of another version.
A tunnel's events name it by number (``tunnel``) and by the label the
tables show (``label``); a forward's by index (``forward``) and by its spec
(``spec``, "-L 0:localhost:80"), as the tables do.
"""

from __future__ import annotations

import json
import traceback
from typing import Any

from ..errors import ERROR_TYPES, TunnelError

PROTOCOL = 1
HELLO = "nbtunnel-engine"

Message = dict[str, Any]


def encode(message: Message) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> Message:
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError(f"not a message: {line[:80]!r}")
    return message


def error_to_dict(exc: BaseException) -> dict[str, str]:
    """An exception as plain data; anything not ours says it is a bug."""
    if isinstance(exc, TunnelError):
        return {"type": type(exc).__name__, "message": str(exc)}
    return {
        "type": "TunnelError",
        "message": f"internal error in the nbtunnel engine: {exc!r}",
        "detail": "".join(traceback.format_exception(exc)),
    }


def error_from_dict(data: dict[str, str]) -> TunnelError:
    cls = ERROR_TYPES.get(data.get("type", ""), TunnelError)
    message = data.get("message", "unknown error")
    exc = cls(message)
    # Kept for -v style debugging; the message alone is what people see.
    exc.engine_traceback = data.get("detail")  # type: ignore[attr-defined]
    return exc
