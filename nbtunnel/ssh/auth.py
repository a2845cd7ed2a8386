"""Logging in to an SSH server, as OpenSSH's client does.

Methods are tried in the order of ``PreferredAuthentications`` (default:
publickey, keyboard-interactive, password) among those the server allows.
A server that asks for several steps (``AuthenticationMethods
publickey,keyboard-interactive``) reports partial success after each, and
the next step starts from the methods it then allows.  Every question goes
through the one prompt function; answers are passed on and never kept.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import paramiko
from paramiko.agent import AgentSSH

from ..errors import AuthenticationError, ConnectError
from ..settings import known_hosts
from ..settings.resolve import ConnectSettings, Prompt

METHODS = ("publickey", "keyboard-interactive", "password")
# How long keyboard-interactive waits for a person's answers; the server's
# LoginGraceTime (two minutes by default) usually ends it first.
ANSWER_TIME = 600.0


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


@dataclass
class _Offer:
    """One key we may offer, and where it came from (for messages)."""

    key: paramiko.PKey
    source: str

    @property
    def text(self) -> str:
        cert = " with its certificate" if self.key.public_blob is not None else ""
        return f"{self.source} ({key_label(self.key)} {fingerprint(self.key)}{cert})"


class _Failed(Exception):
    """A method has nothing more to try."""


class Login:
    """Authenticates one transport; holds the agent connection until close()."""

    def __init__(
        self, settings: ConnectSettings, prompt: Prompt | None, timeout: float
    ) -> None:
        self.settings = settings
        self._prompt = None if settings.batch_mode else prompt
        self._timeout = timeout
        self._agent: AgentSSH | None = None
        # What each method tried and why it stopped, for the final message.
        self._tried: list[str] = []
        self._notes: list[str] = []
        self._keys: Iterator[_Offer] | None = None

    def close(self) -> None:
        if self._agent is not None:
            self._agent._close()  # type: ignore[attr-defined]
            self._agent = None

    # -- the conversation ---------------------------------------------------

    def run(self, transport: paramiko.Transport) -> None:
        """Log in, or raise AuthenticationError saying what was tried."""
        s = self.settings
        try:
            allowed = self._call(lambda: transport.auth_none(s.user))
        except paramiko.BadAuthenticationType as exc:
            allowed = list(exc.allowed_types)
        except paramiko.AuthenticationException:
            allowed = list(METHODS)
        steps: list[str] = []
        done: set[str] = set()
        while not transport.is_authenticated():
            method = next(
                (m for m in s.auth_methods if m in allowed and m not in done), None
            )
            if method is None:
                raise self._refused(allowed, steps)
            try:
                allowed = self._step(method, transport)
            except _Failed:
                done.add(method)
                continue
            if not transport.is_authenticated():
                # Partial success: the server wants another step, which may
                # be the same method again (two keys, say).
                steps.append(method)
                done = set()

    def _step(self, method: str, transport: paramiko.Transport) -> list[str]:
        if method == "publickey":
            return self._publickey(transport)
        if method == "keyboard-interactive":
            return self._interactive(transport)
        return self._password(transport)

    def _call(self, attempt: Callable[[], list[str] | None]) -> list[str]:
        try:
            result = attempt()
        except paramiko.AuthenticationException:
            raise  # the caller's to judge (BadAuthenticationType is one)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ConnectError(
                f"the connection to {self.settings.target} broke while logging in: "
                f"{exc}"
            ) from None
        return list(result) if result else []

    def _refused(self, allowed: Sequence[str], steps: list[str]) -> AuthenticationError:
        s = self.settings
        off = [m for m in allowed if m in METHODS and m not in s.auth_methods]
        if off:
            self._notes.append(
                f"the server also allows {' and '.join(off)}, turned off here "
                "(PreferredAuthentications or *Authentication no)"
            )
        detail = "; ".join(self._notes)
        after = f" after {' and '.join(steps)} succeeded" if steps else ""
        usable = [m for m in allowed if m in s.auth_methods]
        if not usable and not self._tried:
            return AuthenticationError(
                f"{s.target} allows only {', '.join(allowed) or 'nothing'}{after}, "
                f"and nbtunnel logs in with {', '.join(s.auth_methods)}"
                + (f" ({detail})" if detail else "")
            )
        keys_only = all(t.startswith("key ") for t in self._tried)
        if not self._tried and "publickey" not in usable:
            return AuthenticationError(
                f"cannot log in to {s.target}{after}: {detail or 'nothing to try'}"
            )
        if not self._tried:
            return AuthenticationError(
                f"no key to log in to {s.target} with{after}: pass one with -i, "
                "create ~/.ssh/id_ed25519, or load a key into ssh-agent"
                + (f" ({detail})" if detail else "")
            )
        if keys_only:
            return AuthenticationError(
                f"{s.target} refused every key offered{after}: "
                + ", ".join(t[4:] for t in self._tried)
                + ". Check that the public key is in ~/.ssh/authorized_keys of "
                f"{s.user} on the server, or pass the right key with -i"
                + (f" ({detail})" if detail else "")
            )
        return AuthenticationError(
            f"{s.target} refused the login{after}: tried "
            + ", ".join(self._tried)
            + (f" ({detail})" if detail else "")
        )

    # -- publickey ----------------------------------------------------------

    def _publickey(self, transport: paramiko.Transport) -> list[str]:
        if self._keys is None:
            self._keys = self._offers()
        for offer in self._keys:
            self._tried.append(f"key {offer.text}")
            try:
                return self._call(
                    functools.partial(
                        transport.auth_publickey, self.settings.user, offer.key
                    )
                )
            except paramiko.BadAuthenticationType as exc:
                self._notes.append(
                    f"publickey is not allowed now (allowed: "
                    f"{', '.join(exc.allowed_types)})"
                )
                return list(exc.allowed_types)
            except paramiko.AuthenticationException:
                continue
        raise _Failed

    def _offers(self) -> Iterator[_Offer]:
        """Keys to offer, in ssh's order: the agent's, then the files.

        A key with a certificate is offered with it first, then alone.  An
        encrypted file comes last and its passphrase is asked only when it is
        reached, so nobody is asked for a key that is not needed.
        """
        s = self.settings
        files: list[_Offer] = []
        locked: list[str] = []
        wanted: set[bytes] = set()
        for path in s.identities:
            try:
                files.append(_Offer(paramiko.PKey.from_path(path), path))
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
            except (paramiko.SSHException, OSError, ValueError) as exc:
                self._notes.append(f"cannot read identity file {path}: {exc}")
        wanted |= {o.key.asbytes() for o in files}
        certificates = self._certificates()
        offered: set[bytes] = set()
        for agent_key in self._agent_keys():
            blob = agent_key.asbytes()
            if s.identities_only and blob not in wanted:
                continue
            offered.add(blob)
            yield from self._with_certificate(
                _Offer(agent_key, "ssh-agent"), certificates
            )
        for offer in files:
            if offer.key.asbytes() not in offered:
                yield from self._with_certificate(offer, certificates)
        for path in locked:
            if public_blob(path) & offered:
                continue  # the agent holds it unlocked already
            key = self._unlock(path)
            if key is not None:
                yield from self._with_certificate(_Offer(key, path), certificates)

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
                cert = known_hosts.parse_certificate(blob)
            except FileNotFoundError:
                self._notes.append(f"certificate file {path} does not exist")
                continue
            except (OSError, IndexError, ValueError) as exc:
                self._notes.append(f"cannot read certificate {path}: {exc}")
                continue
            found.setdefault(cert.plain_key, []).append(path)
        return found

    def _with_certificate(
        self, offer: _Offer, certificates: dict[bytes, list[str]]
    ) -> Iterator[_Offer]:
        # The same key object carries each certificate in turn, then none:
        # offers are consumed one at a time, each before the next is made.
        for path in certificates.get(offer.key.asbytes(), ()):
            try:
                offer.key.load_certificate(path)
            except (OSError, ValueError, paramiko.SSHException) as exc:
                self._notes.append(f"cannot use certificate {path}: {exc}")
                continue
            yield _Offer(offer.key, f"{offer.source} + {path}")
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
            f"{path}: wrong passphrase, {_times(self.settings.password_prompts)}"
        )
        return None

    def _agent_keys(self) -> tuple[paramiko.PKey, ...]:
        path = self.settings.agent_socket
        if not path:
            return ()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self._timeout)
            sock.connect(path)
            # paramiko's Agent() only reads SSH_AUTH_SOCK of this process;
            # the caller's socket path arrives in the settings instead.
            agent = AgentSSH()
            agent._connect(sock)  # type: ignore[attr-defined]
        except (OSError, paramiko.SSHException) as exc:
            sock.close()
            self._notes.append(f"ssh-agent at {path} did not answer ({exc})")
            return ()
        self._agent = agent
        return tuple(agent.get_keys())

    # -- questions: keyboard-interactive and password -------------------------

    def _nobody(self, method: str) -> _Failed:
        why = (
            "BatchMode is on"
            if self.settings.batch_mode
            else "nobody can answer questions here"
        )
        self._notes.append(f"the server asks for {method}, but {why}")
        return _Failed()

    def _interactive(self, transport: paramiko.Transport) -> list[str]:
        prompt = self._prompt
        if prompt is None:
            raise self._nobody("keyboard-interactive")
        declined = False

        def answer(
            title: str, instructions: str, questions: Sequence[tuple[str, bool]]
        ) -> list[str]:
            # Runs in paramiko's transport thread, which nothing else needs
            # while logging in; an exception here would kill the connection,
            # so a declined question answers "" and ends the method after.
            nonlocal declined
            header = "\n".join(t for t in (title, instructions) if t.strip())
            answers = []
            for n, (text, echo) in enumerate(questions):
                if declined:
                    answers.append("")
                    continue
                shown = f"{header}\n{text}" if header and n == 0 else text
                reply = prompt(shown, not echo)
                if reply is None:
                    declined = True
                answers.append(reply or "")
            if not questions and header:
                # Information only (an expiry warning, say): shown, not asked.
                self._notes.append(header)
            return answers

        for attempt in range(self.settings.password_prompts):
            self._tried.append("keyboard-interactive" + (" again" if attempt else ""))
            saved, transport.auth_timeout = transport.auth_timeout, ANSWER_TIME
            try:
                # A person types the answers: ANSWER_TIME, not the connect
                # timeout; the server's LoginGraceTime usually ends it first.
                return self._call(
                    lambda: transport.auth_interactive(self.settings.user, answer)
                )
            except paramiko.BadAuthenticationType as exc:
                return list(exc.allowed_types)
            except paramiko.AuthenticationException:
                if declined:
                    self._notes.append("a keyboard-interactive question was declined")
                    break
            finally:
                transport.auth_timeout = saved
        else:
            self._notes.append(
                "keyboard-interactive failed " + _times(self.settings.password_prompts)
            )
        raise _Failed

    def _password(self, transport: paramiko.Transport) -> list[str]:
        s = self.settings
        if self._prompt is None:
            raise self._nobody("a password")
        question = f"{s.user}@{s.host}'s password: "
        for attempt in range(s.password_prompts):
            again = "Permission denied, please try again.\n" if attempt else ""
            password = self._prompt(again + question, True)
            if password is None:
                self._notes.append("no password was given")
                raise _Failed
            self._tried.append("password")
            try:
                # fallback=False: never send the password to a
                # keyboard-interactive question it was not asked for.
                return self._call(
                    functools.partial(
                        transport.auth_password, s.user, password, fallback=False
                    )
                )
            except paramiko.BadAuthenticationType as exc:
                return list(exc.allowed_types)
            except paramiko.AuthenticationException:
                continue
        self._notes.append(f"wrong password, {_times(s.password_prompts)}")
        raise _Failed


def _times(n: int) -> str:
    return {1: "once", 2: "twice", 3: "three times"}.get(n, f"{n} times")


def public_blob(path: str) -> set[bytes]:
    """The public key beside a private one (``path.pub``), as ssh reads it."""
    try:
        with open(path + ".pub", encoding="ascii") as f:
            return {base64.b64decode(f.read().split()[1])}
    except (OSError, IndexError, ValueError):
        return set()
