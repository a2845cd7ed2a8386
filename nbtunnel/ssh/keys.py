"""The keys a login offers, in ssh's order, and what a key is called.

:class:`Keyring` finds them: the agent's (``agent``), then the identity
files; an encrypted file is unlocked with a passphrase asked for when it is
reached; a key with a certificate (``CertificateFile``, or
``<identity>-cert.pub`` beside it) is offered with it first, then alone.
What could not be used is noted for the login's final message.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import paramiko

from ..settings.certificates import parse_certificate
from ..settings.resolve import ConnectSettings, Prompt
from .agent import Agent
from .trace import QUIET, Trace


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:`` fingerprint of a public key."""
    return blob_fingerprint(key.asbytes())


def blob_fingerprint(blob: bytes) -> str:
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def key_label(key: paramiko.PKey) -> str:
    """``ED25519``, ``RSA``, ``ECDSA P-256``: the type as ssh names it in messages."""
    name = key.get_name()
    if name.startswith("ssh-"):
        name = name[4:]
    return name.upper().replace("-SHA2-NISTP", " P-")


def times(n: int) -> str:
    return {1: "once", 2: "twice", 3: "three times"}.get(n, f"{n} times")


def public_blob(path: str) -> set[bytes]:
    """The public key beside a private one (``path.pub``), as ssh reads it."""
    try:
        with open(path + ".pub", encoding="ascii") as f:
            return {base64.b64decode(f.read().split()[1])}
    except (OSError, IndexError, ValueError):
        return set()


@dataclass
class Offer:
    """One key we may offer, and where it came from (for messages)."""

    key: paramiko.PKey
    source: str

    @property
    def text(self) -> str:
        cert = " with its certificate" if self.key.public_blob is not None else ""
        return f"{self.source} ({key_label(self.key)} {fingerprint(self.key)}{cert})"


class Keyring:
    """The keys of one login; what cannot be used is appended to ``notes``."""

    def __init__(
        self,
        settings: ConnectSettings,
        prompt: Prompt | None,
        agent: Agent,
        notes: list[str],
        trace: Trace = QUIET,
    ) -> None:
        self.settings = settings
        self._prompt = prompt
        self._agent = agent
        self._notes = notes
        self._trace = trace

    def offers(self) -> Iterator[Offer]:
        """Keys to offer, in ssh's order: the agent's, then the files.

        A key with a certificate is offered with it first, then alone.  An
        encrypted file comes last and its passphrase is asked only when it is
        reached, so nobody is asked for a key that is not needed.
        """
        s = self.settings
        files: list[Offer] = []
        locked: list[str] = []
        wanted: set[bytes] = set()
        trace = self._trace
        for path in s.identities:
            try:
                files.append(Offer(paramiko.PKey.from_path(path), path))
                trace(1, "identity file %s", files[-1].text)
            except FileNotFoundError:
                self._notes.append(f"identity file {path} does not exist")
            except (paramiko.PasswordRequiredException, TypeError) as exc:
                # paramiko raises TypeError for an OpenSSH-format key that
                # needs a passphrase (cryptography's words) and
                # PasswordRequiredException for a PEM one.
                if isinstance(exc, TypeError) and "password" not in str(exc):
                    raise
                locked.append(path)
                wanted |= public_blob(path)
                trace(1, "identity file %s is encrypted: offered last", path)
            except (paramiko.SSHException, OSError, ValueError) as exc:
                self._notes.append(f"cannot read identity file {path}: {exc}")
        wanted |= {o.key.asbytes() for o in files}
        certificates = self._certificates()
        offered: set[bytes] = set()
        for agent_key in self._agent_keys():
            blob = agent_key.asbytes()
            if s.identities_only and blob not in wanted:
                trace(
                    2,
                    "skipping ssh-agent key %s (IdentitiesOnly)",
                    fingerprint(agent_key),
                )
                continue
            offered.add(blob)
            yield from self._with_certificate(
                Offer(agent_key, "ssh-agent"), certificates
            )
        for offer in files:
            if offer.key.asbytes() not in offered:
                yield from self._with_certificate(offer, certificates)
        for path in locked:
            if public_blob(path) & offered:
                continue  # the agent holds it unlocked already
            key = self._unlock(path)
            if key is not None:
                yield from self._with_certificate(Offer(key, path), certificates)

    def _certificates(self) -> dict[bytes, list[str]]:
        """Certificates by the public key they certify: ``CertificateFile`` ones,
        then ``<identity>-cert.pub`` beside each identity file (as ssh)."""
        s = self.settings
        paths = list(s.certificates)
        paths += [
            p + "-cert.pub" for p in s.identities if os.path.exists(p + "-cert.pub")
        ]
        found: dict[bytes, list[str]] = {}
        for path in dict.fromkeys(paths):
            try:
                with open(path, encoding="ascii") as f:
                    fields = f.read().split()
                blob = base64.b64decode(fields[1])
                cert = parse_certificate(blob)
            except FileNotFoundError:
                self._notes.append(f"certificate file {path} does not exist")
                continue
            except (OSError, IndexError, ValueError) as exc:
                self._notes.append(f"cannot read certificate {path}: {exc}")
                continue
            found.setdefault(cert.plain_key, []).append(path)
        return found

    def _with_certificate(
        self, offer: Offer, certificates: dict[bytes, list[str]]
    ) -> Iterator[Offer]:
        # The same key object carries each certificate in turn, then none:
        # offers are consumed one at a time, each before the next is made.
        for path in certificates.get(offer.key.asbytes(), ()):
            try:
                offer.key.load_certificate(path)
            except (OSError, ValueError, paramiko.SSHException) as exc:
                self._notes.append(f"cannot use certificate {path}: {exc}")
                continue
            yield Offer(offer.key, f"{offer.source} + {path}")
        offer.key.public_blob = None
        yield offer

    def _unlock(self, path: str) -> paramiko.PKey | None:
        """An encrypted key, with a passphrase asked for (three tries, as ssh)."""
        if self._prompt is None:
            self._notes.append(
                f"{path} is encrypted and nobody could be asked its passphrase; "
                f"load it into ssh-agent (ssh-add {path})"
            )
            return None
        for _ in range(self.settings.password_prompts):
            passphrase = self._prompt(f"Enter passphrase for key '{path}': ", True)
            if not passphrase:
                self._notes.append(f"{path} is encrypted and no passphrase was given")
                return None
            try:
                # bytes, whatever the stubs say: cryptography checks.
                return paramiko.PKey.from_path(path, password=passphrase.encode())  # type: ignore[arg-type]
            except (paramiko.SSHException, ValueError):
                continue  # the wrong passphrase: ask again
        self._notes.append(
            f"{path}: wrong passphrase, {times(self.settings.password_prompts)}"
        )
        return None

    def _agent_keys(self) -> tuple[paramiko.PKey, ...]:
        try:
            keys = self._agent.keys()
            if self._agent.path:
                self._trace(
                    1, "ssh-agent at %s: %d key(s)", self._agent.path, len(keys)
                )
            return keys
        except (OSError, paramiko.SSHException) as exc:
            self._notes.append(
                f"ssh-agent at {self._agent.path} did not answer ({exc})"
            )
            return ()
