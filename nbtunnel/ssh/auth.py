"""Logging in to an SSH server, as OpenSSH's client does.

Methods are tried in the order of ``PreferredAuthentications`` (default:
publickey, keyboard-interactive, password) among those the server allows.
A server that asks for several steps (``AuthenticationMethods
publickey,keyboard-interactive``) reports partial success after each, and
the next step starts from the methods it then allows.  The keys offered
come from ``keys`` (and ``agent``).  Every question goes through the one
prompt function; answers are passed on and never kept.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence

import paramiko

from ..errors import AuthenticationError, ConnectError
from ..settings.resolve import ConnectSettings, Prompt
from . import negotiated
from .agent import Agent
from .keys import Keyring, Offer, times
from .printable import escaped, escaped_lines
from .trace import QUIET, Trace

METHODS = ("publickey", "keyboard-interactive", "password")
# How long keyboard-interactive waits for a person's answers; the server's
# LoginGraceTime (two minutes by default) usually ends it first.
ANSWER_TIME = 600.0


class _Failed(Exception):
    """A method has nothing more to try."""


def _shown(*texts: str) -> str:
    """The server's words for a person (keyboard-interactive's questions):
    their lines escaped, the blank ones left out."""
    return "\n".join(x for t in texts for x in escaped_lines(t) if x.strip())


def _names(methods: Sequence[str] | None) -> list[str]:
    """The methods a server says it allows: its words, escaped for the
    messages that quote them."""
    return [escaped(m) for m in methods or ()]


class _Notes(list[str]):
    """Why what was tried stopped, for the final message; each said at -v
    as it is noted."""

    def __init__(self, trace: Trace) -> None:
        super().__init__()
        self._trace = trace

    def append(self, note: str) -> None:
        super().append(note)
        self._trace(1, "%s", note)


class Login:
    """Authenticates one transport; holds the agent connection until close()."""

    def __init__(
        self,
        settings: ConnectSettings,
        prompt: Prompt | None,
        timeout: float,
        trace: Trace = QUIET,
    ) -> None:
        self.settings = settings
        self._prompt = None if settings.batch_mode else prompt
        self._agent = Agent(settings.agent_socket, timeout)
        self._trace = trace
        # What each method tried and why it stopped, for the final message.
        self._tried: list[str] = []
        self._notes = _Notes(trace)
        self._keys: Iterator[Offer] | None = None
        # The methods that logged in, in order (several for a multi-step login).
        self.methods: list[str] = []

    def close(self) -> None:
        self._agent.close()

    # -- the conversation ---------------------------------------------------

    def run(self, transport: paramiko.Transport) -> None:
        """Log in, or raise AuthenticationError saying what was tried."""
        s, trace = self.settings, self._trace
        trace(1, "Authenticating to %s:%d as '%s'", s.host, s.port, s.user)
        try:
            allowed = self._call(lambda: transport.auth_none(s.user))
        except paramiko.BadAuthenticationType as exc:
            allowed = _names(exc.allowed_types)
        except paramiko.AuthenticationException:
            allowed = list(METHODS)
        negotiated.banner(transport, trace)
        if transport.is_authenticated():
            self.methods.append("none")
        steps: list[str] = []
        done: set[str] = set()
        while not transport.is_authenticated():
            trace(1, "Authentications that can continue: %s", ",".join(allowed))
            method = next(
                (m for m in s.auth_methods if m in allowed and m not in done), None
            )
            if method is None:
                trace(1, "No more authentication methods to try.")
                raise self._refused(allowed, steps)
            trace(1, "Next authentication method: %s", method)
            try:
                allowed = self._step(method, transport)
            except _Failed:
                trace(1, "%s: nothing more to try", method)
                done.add(method)
                continue
            self.methods.append(method)
            if not transport.is_authenticated():
                # Partial success: the server wants another step, which may
                # be the same method again (two keys, say).
                trace(1, "Partial success: %s accepted, another step follows", method)
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
                f"{escaped(str(exc) or type(exc).__name__)}"
            ) from None
        return _names(result)

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
        trace = self._trace
        if self._keys is None:
            keyring = Keyring(
                self.settings, self._prompt, self._agent, self._notes, trace
            )
            self._keys = keyring.offers()
        for offer in self._keys:
            self._tried.append(f"key {offer.text}")
            trace(1, "Offering public key: %s", offer.text)
            try:
                allowed = self._call(
                    functools.partial(
                        transport.auth_publickey, self.settings.user, offer.key
                    )
                )
            except paramiko.BadAuthenticationType as exc:
                allowed = _names(exc.allowed_types)
                self._notes.append(
                    f"publickey is not allowed now (allowed: {', '.join(allowed)})"
                )
                return allowed
            except paramiko.AuthenticationException:
                trace(1, "Server refused key: %s", offer.source)
                continue
            trace(1, "Server accepted key: %s", offer.source)
            return allowed
        raise _Failed

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
            header = _shown(title, instructions)
            answers = []
            for n, (text, echo) in enumerate(questions):
                if declined:
                    answers.append("")
                    continue
                reply = prompt(
                    _shown(header, text) if n == 0 else _shown(text), not echo
                )
                if reply is None:
                    declined = True
                answers.append(reply or "")
            if not questions and header:
                # Information only (an expiry warning, say): shown, not asked.
                self._notes.append(header.replace("\n", " "))  # one line
            self._trace(1, "keyboard-interactive: %d question(s)", len(questions))
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
                return _names(exc.allowed_types)
            except paramiko.AuthenticationException:
                self._trace(1, "keyboard-interactive: refused")
                if declined:
                    self._notes.append("a keyboard-interactive question was declined")
                    break
            finally:
                transport.auth_timeout = saved
        else:
            self._notes.append(
                "keyboard-interactive failed " + times(self.settings.password_prompts)
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
                return _names(exc.allowed_types)
            except paramiko.AuthenticationException:
                self._trace(1, "password: refused")
                continue
        self._notes.append(f"wrong password, {times(s.password_prompts)}")
        raise _Failed
