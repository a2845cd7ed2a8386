"""Deterministic test data shared by the targets process and the tests.

Both sides regenerate the same bytes from a seed, so a test can check a
transfer of any size by count + sha256 without keeping a copy of it.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Iterator

BLOCK = 64 * 1024
SEED = 0x6E627475  # "nbtu"

# One random block, rotated by a block-dependent offset: cheap to produce
# (a slice, no per-byte Python work) yet every 64 KiB block of the first
# 4 GiB differs, so a dropped, duplicated or reordered block changes the hash.
_BASE = random.Random(SEED).randbytes(BLOCK)
_STEP = 7919  # odd, hence coprime with BLOCK: offsets repeat only after BLOCK blocks


def block(k: int) -> bytes:
    """The k-th BLOCK-sized block of the stream."""
    off = (k * _STEP) % BLOCK
    return _BASE[off:] + _BASE[:off]


def chunks(n: int) -> Iterator[bytes]:
    """The first n bytes of the stream, as BLOCK-sized pieces (last one shorter)."""
    if n < 0:
        raise ValueError(f"negative length {n}")
    k = 0
    while n > 0:
        piece = block(k)
        if n < BLOCK:
            piece = piece[:n]
        yield piece
        n -= len(piece)
        k += 1


def pattern(n: int) -> bytes:
    """The first n bytes of the stream in one bytes object."""
    return b"".join(chunks(n))


@functools.lru_cache(maxsize=64)
def expected_sha256(n: int) -> str:
    """sha256 hex digest of pattern(n)."""
    h = hashlib.sha256()
    for piece in chunks(n):
        h.update(piece)
    return h.hexdigest()
