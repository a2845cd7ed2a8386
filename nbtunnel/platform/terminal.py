"""The terminal's character set.

A Windows console (and any stream redirected there) encodes with a code page
such as cp1252, which has no arrow or box-drawing characters; printing one
raises UnicodeEncodeError, which would end the CLI and the demo in a
traceback.  Probed, not switched on the name: whatever the stream's encoding
cannot carry is replaced, and everything it can is printed as it is.
"""

from __future__ import annotations

import contextlib
import io
from typing import TextIO


def replace_unencodable(*streams: TextIO) -> None:
    """Make ``streams`` print "?" for what their encoding lacks, not raise."""
    for stream in streams:
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            # A stream that is already closed or detached keeps its ways.
            with contextlib.suppress(ValueError, io.UnsupportedOperation):
                stream.reconfigure(errors="replace")
