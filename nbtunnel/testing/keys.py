"""Throwaway Ed25519 keys for the embedded server, written as OpenSSH writes them."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def new_key(path: Path, comment: str) -> str:
    """Write a fresh private key to ``path`` (mode 600) and ``path.pub``;
    returns the public line (``ssh-ed25519 AAAA... comment``)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    # Created 600 from the start: ssh(1) refuses a key others could read.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    line = f"{public.decode()} {comment}"
    path.with_name(path.name + ".pub").write_text(line + "\n")
    return line


def blob(public_line: str) -> bytes:
    """The key blob of a public key line, as the SSH protocol carries it."""
    return base64.b64decode(public_line.split()[1])
