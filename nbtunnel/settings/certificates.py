"""OpenSSH certificates (``PROTOCOL.certkeys``), parsed without paramiko.

Parsed far enough to check a host certificate against the
``@cert-authority`` lines of ``known_hosts`` and to pair a user certificate
with its key; verifying the CA's signature is left to whoever holds a crypto
library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .wire import WireReader

CERT_USER = 1
CERT_HOST = 2
_FOREVER = 0xFFFF_FFFF_FFFF_FFFF  # ssh-keygen -V ...:forever

# The certified key's fields between the nonce and the serial, per type;
# mpint and string share the same length-prefixed framing.
_CERT_KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "ssh-ed25519-cert-v01@openssh.com": ("public key",),
    "ssh-rsa-cert-v01@openssh.com": ("RSA exponent", "RSA modulus"),
    "ssh-dss-cert-v01@openssh.com": ("DSA p", "DSA q", "DSA g", "DSA y"),
    "sk-ssh-ed25519-cert-v01@openssh.com": ("public key", "application"),
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com": (
        "curve",
        "public key",
        "application",
    ),
    **{
        f"ecdsa-sha2-{curve}-cert-v01@openssh.com": ("curve", "public key")
        for curve in ("nistp256", "nistp384", "nistp521")
    },
}
_CURVE = re.compile(r"ecdsa-sha2-(nistp\d+)-cert")


def _text_list(data: bytes, what: str) -> tuple[str, ...]:
    reader = WireReader(data, f"certificate {what}")
    items = []
    while reader.remaining:
        items.append(reader.text("entry"))
    return tuple(items)


def _option_list(data: bytes, what: str) -> tuple[tuple[str, bytes], ...]:
    reader = WireReader(data, f"certificate {what}")
    items = []
    while reader.remaining:
        name = reader.text("name")
        items.append((name, reader.string(f"data of {name!r}")))
    return tuple(items)


def _check_curve(key_type: str, curve: bytes) -> None:
    # sshkey_from_blob() refuses a certificate whose curve contradicts its name.
    match = _CURVE.search(key_type)
    if match and curve != match.group(1).encode():
        raise ValueError(f"{key_type} certificate is for curve {curve!r}")


@dataclass(frozen=True)
class Certificate:
    """An OpenSSH certificate, parsed but not verified."""

    key_type: str
    nonce: bytes
    public_key: bytes  # the certified key's fields, wire-encoded, opaque
    serial: int
    cert_type: int  # CERT_USER or CERT_HOST
    key_id: str
    principals: tuple[str, ...]
    valid_after: int
    valid_before: int
    critical_options: tuple[tuple[str, bytes], ...]  # (name, raw data field)
    extensions: tuple[tuple[str, bytes], ...]
    signature_key: bytes  # the CA's public key blob
    signed_data: bytes  # everything the CA signed
    signature: bytes  # contents of the signature string

    @property
    def plain_key(self) -> bytes:
        """The certified key as a plain public key blob, as its ``.pub`` holds it."""
        name = self.key_type.removesuffix("-cert-v01@openssh.com")
        if name.startswith("sk-"):
            name += "@openssh.com"  # sk-ssh-ed25519@openssh.com, say
        encoded = name.encode("ascii")
        return len(encoded).to_bytes(4, "big") + encoded + self.public_key

    def valid_at(self, when: float) -> bool:
        """Whether the validity interval holds the UNIX time ``when``."""
        if when < self.valid_after:
            return False
        return self.valid_before == _FOREVER or when < self.valid_before


def _key_fields(key_type: str) -> tuple[str, ...]:
    fields = _CERT_KEY_FIELDS.get(key_type)
    if fields is None:
        raise ValueError(f"not a supported OpenSSH certificate type: {key_type!r}")
    return fields


def _read_public_key(reader: WireReader, key_type: str) -> None:
    for what in _key_fields(key_type):
        value = reader.string(what)
        if what == "curve":
            _check_curve(key_type, value)


def parse_certificate(blob: bytes) -> Certificate:
    """Parse a certificate blob; :class:`ValueError` says what is malformed."""
    reader = WireReader(blob, "certificate")
    key_type = reader.text("key type")
    _key_fields(key_type)  # an unknown type is the better complaint than truncation
    nonce = reader.string("nonce")
    key_start = reader.offset
    _read_public_key(reader, key_type)
    public_key = blob[key_start : reader.offset]
    serial = reader.uint64("serial")
    cert_type = reader.uint32("certificate type")
    key_id = reader.text("key id")
    principals = _text_list(reader.string("principals"), "principals")
    valid_after = reader.uint64("valid-after time")
    valid_before = reader.uint64("valid-before time")
    critical = _option_list(reader.string("critical options"), "critical options")
    extensions = _option_list(reader.string("extensions"), "extensions")
    reader.string("reserved field")
    signature_key = reader.string("signature key")
    signed_data = blob[: reader.offset]
    signature = reader.string("signature")
    if reader.remaining:
        raise ValueError(
            f"certificate has {reader.remaining} bytes after its signature"
        )
    if cert_type not in (CERT_USER, CERT_HOST):
        raise ValueError(
            f"certificate type {cert_type} is neither user (1) nor host (2)"
        )
    return Certificate(
        key_type=key_type,
        nonce=nonce,
        public_key=public_key,
        serial=serial,
        cert_type=cert_type,
        key_id=key_id,
        principals=principals,
        valid_after=valid_after,
        valid_before=valid_before,
        critical_options=critical,
        extensions=extensions,
        signature_key=signature_key,
        signed_data=signed_data,
        signature=signature,
    )
