"""Whether to trust the server's host key, as ssh decides it.

The known hosts files (``UserKnownHostsFile``, ``GlobalKnownHostsFile``)
and their ``@revoked`` and ``@cert-authority`` lines, host certificates,
``StrictHostKeyChecking`` (ask, yes, accept-new, no) and recording a new
key (``HashKnownHosts``).  Every refusal is a HostKeyError with a sentence
that says what to do; a key that cannot be recorded is warned about, and
the connection goes on, as ssh does.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import paramiko

from ..errors import HostKeyError
from ..settings import known_hosts
from ..settings.certificates import CERT_HOST, parse_certificate
from ..settings.resolve import ConnectSettings, Prompt
from .keys import blob_fingerprint, fingerprint, key_label
from .printable import escaped
from .trace import QUIET, Trace

logger = logging.getLogger("nbtunnel.ssh")


class HostKeyCheck:
    """The host-key policy for one connection's server."""

    def __init__(
        self,
        settings: ConnectSettings,
        prompt: Prompt | None,
        warn: Callable[[str], None] | None = None,
        trace: Trace = QUIET,
    ) -> None:
        self.settings = settings
        self._trace = trace
        # Asks about an unknown key (StrictHostKeyChecking ask); None when
        # nobody can answer.
        self._prompt = prompt
        # Tells the person something they should know (as an event), beside
        # the log line; None when there is nobody to tell.
        self._warn = warn
        self._known: known_hosts.KnownHosts | None = None

    def _known_hosts(self) -> known_hosts.KnownHosts:
        if self._known is None:
            files = self.settings.known_hosts_files
            try:
                self._known = known_hosts.KnownHosts.load(files)
            except OSError as exc:
                raise HostKeyError(
                    f"cannot read known hosts file {exc.filename}: "
                    f"{exc.strerror or exc}"
                ) from None
            if self._trace.wants(2):
                self._trace(2, "known hosts files: %s", " ".join(files) or "none")
                for path, line, why in self._known.skipped:
                    self._trace(2, "%s:%d: line skipped: %s", path, line, why)
        return self._known

    def key_types(self, offered: tuple[str, ...]) -> tuple[str, ...]:
        """paramiko's host key types, those we can check first, as ssh orders them.

        Otherwise a server with several host keys could present one nobody
        has seen.  An RSA key is stored as "ssh-rsa" but signed with
        rsa-sha2-* (sshd 8.8+ refuses SHA-1 "ssh-rsa" signatures).
        """
        s = self.settings
        hosts = self._known_hosts()
        known = hosts.keys_for(s.host, s.port)
        rsa = "ssh-rsa" in known
        plain = [
            t for t in offered if t in known or (rsa and t.startswith("rsa-sha2-"))
        ]
        certs: list[str] = []
        if hosts.authorities(s.host, s.port):
            # A host vouched for by a CA is asked for its certificate.
            certs = [t for t in offered if t.endswith("-cert-v01@openssh.com")]
        first = [*certs, *plain]
        return tuple(first) + tuple(t for t in offered if t not in first)

    def check(self, key: paramiko.PKey) -> None:
        """Accept the server's ``key`` or raise HostKeyError; may ask, and
        record a key newly accepted."""
        s = self.settings
        hosts = self._known_hosts()
        name = s.known_hosts_name
        blob = key.asbytes()
        trace = self._trace
        trace(1, "Server host key: %s %s", key.get_name(), fingerprint(key))
        revoked = hosts.revoked(s.host, s.port, blob)
        how = ""
        if revoked is None and key.public_blob is not None:
            # As ssh (hostfile.c, check_key_not_revoked): revoking a CA revokes
            # every certificate it signed, whatever else the files trust.
            signer = _signer(key.public_blob.key_blob)
            if signer is not None:
                revoked = hosts.revoked(s.host, s.port, signer)
                how = " through the certificate authority that signed it"
        if revoked is not None:
            raise HostKeyError(
                f"the host key of {name} ({key_label(key)} {fingerprint(key)}) is "
                f"REVOKED{how} ({revoked.path} line {revoked.line}); nbtunnel will "
                "not connect with it"
            )
        why_not_cert = ""
        if key.public_blob is not None:
            why_not_cert = self.check_certificate(key.public_blob.key_blob)
            if not why_not_cert:
                self._found(name, key, hosts, "certificate signed by the authority")
                return
            trace(1, "Host certificate of %s not accepted: %s", name, why_not_cert)
        known = hosts.keys_for(s.host, s.port)
        label = f"{key_label(key)} key {fingerprint(key)}"
        if blob in known.get(key.get_name(), ()):
            self._found(name, key, hosts, f"{key_label(key)} host key")
            return
        if why_not_cert:
            why_not_cert = f" Its certificate was not accepted: {why_not_cert}."
        where = s.known_hosts
        if key.get_name() in known:
            old = known[key.get_name()][0]
            raise HostKeyError(
                f"the host key of {name} has CHANGED: the server shows {label}, "
                f"but the known hosts have {blob_fingerprint(old)}. Someone may be "
                "intercepting the connection, or the server was reinstalled. "
                "nbtunnel never accepts a changed key; if the change is "
                f'expected, remove the old one with: ssh-keygen -R "{name}" '
                f"-f {where}"
            )
        if known:
            raise HostKeyError(
                f"{name} presented the {label}, but the known hosts know it only "
                f"by other key types ({', '.join(sorted(known))}); refusing "
                "rather than trusting a key nobody has seen." + why_not_cert
            )
        mode = s.strict_host_key_checking
        trace(1, "Host key of '%s' is not known (StrictHostKeyChecking %s)", name, mode)
        if mode == "ask" and self._prompt is not None and not s.batch_mode:
            self._ask(name, key)
            trace(1, "Host key accepted by you")
        elif mode in ("yes", "ask"):
            nobody = " Nobody could be asked about it here." if mode == "ask" else ""
            raise HostKeyError(
                f"the host key of {name} is unknown: {label}.{why_not_cert}{nobody} "
                "If that fingerprint is the server's, accept and record it with "
                f"-o StrictHostKeyChecking=accept-new (into {where})"
            )
        self._record(name, key)

    def _found(
        self, name: str, key: paramiko.PKey, hosts: known_hosts.KnownHosts, what: str
    ) -> None:
        """Say where the key (or its certificate's signer) was found, as ssh -v."""
        if not self._trace.wants(1):
            return
        s = self.settings
        wanted, marker = key.asbytes(), ""
        if key.public_blob is not None:
            wanted = _signer(key.public_blob.key_blob) or b""
            marker = known_hosts.MARKER_CA
        for entry in hosts.lookup(s.host, s.port):
            if entry.marker == marker and entry.blob == wanted:
                self._trace(1, "Host '%s' is known and matches the %s.", name, what)
                self._trace(1, "Found key in %s:%d", entry.path, entry.line)
                return

    def check_certificate(self, blob: bytes) -> str:
        """Why the server's host certificate is not to be trusted ("" if it is):
        signed by a ``@cert-authority`` of this host, for this host, in date."""
        s = self.settings
        try:
            cert = parse_certificate(blob)
        except ValueError as exc:
            return f"it cannot be read ({escaped(str(exc))})"
        authorities = {e.blob for e in self._known_hosts().authorities(s.host, s.port)}
        if cert.signature_key not in authorities:
            return "no @cert-authority line for this host names its signer"
        if cert.cert_type != CERT_HOST:
            return "it is a user certificate, not a host one"
        if cert.principals and s.host.lower() not in (
            p.lower() for p in cert.principals
        ):
            names = ", ".join(escaped(p) for p in cert.principals)  # the server's
            return f"it names {names}, not {s.host}"
        if not cert.valid_at(time.time()):
            return "it is expired or not yet valid"
        try:
            ca_type = paramiko.Message(cert.signature_key).get_text()
            ca = paramiko.PKey.from_type_string(ca_type, cert.signature_key)
            if ca.verify_ssh_sig(cert.signed_data, paramiko.Message(cert.signature)):
                return ""
        except (paramiko.SSHException, ValueError) as exc:
            return f"its signature cannot be checked ({escaped(str(exc))})"
        return "its signature does not verify"

    def _ask(self, name: str, key: paramiko.PKey) -> None:
        assert self._prompt is not None
        print_ = fingerprint(key)
        # OpenSSH's own question, so the answer people know works here too.
        question = (
            f"The authenticity of host '{name}' can't be established.\n"
            f"{key_label(key)} key fingerprint is {print_}.\n"
            "This key is not known by any other names.\n"
            "Are you sure you want to continue connecting (yes/no/[fingerprint])? "
        )
        for _ in range(3):
            answer = self._prompt(question, False)
            if answer is None:
                raise HostKeyError(
                    f"the host key of {name} ({print_}) is unknown and nobody "
                    "answered whether to trust it"
                )
            answer = answer.strip()
            if answer.lower() == "yes" or answer == print_:
                return
            if answer.lower() == "no":
                raise HostKeyError(
                    f"the host key of {name} ({print_}) was refused: you answered no"
                )
            question = "Please type 'yes', 'no' or the fingerprint: "
        raise HostKeyError(
            f"the host key of {name} ({print_}) was not accepted: no answer was "
            "'yes', 'no' or the fingerprint"
        )

    def _record(self, name: str, key: paramiko.PKey) -> None:
        path = self.settings.known_hosts
        if not path or path == os.devnull:
            self._trace(1, "Host key of '%s' accepted, not recorded: no file", name)
            return
        try:
            known_hosts.append(
                path,
                name,
                key.get_name(),
                key.asbytes(),
                hashed=self.settings.hash_known_hosts,
            )
            self._trace(
                1, "Permanently added '%s' (%s) to the list of known hosts (%s).",
                name, key_label(key), path,
            )  # fmt: skip
        except OSError as exc:
            # ssh warns and connects: the key was accepted, only remembering
            # it failed (a read-only home, a known_hosts mounted from a
            # ConfigMap).  It is asked about again next time.
            reason = exc.strerror or str(exc)
            if exc.filename and exc.filename != path:
                reason += f": {exc.filename}"  # a directory on the way there
            text = (
                f"Failed to add the host to the list of known hosts ({path}): "
                f"{reason}; the host key of {name} ({fingerprint(key)}) is "
                "trusted for this connection only"
            )
            logger.warning("%s", text)
            if self._warn is not None:
                self._warn(text)


def _signer(cert_blob: bytes) -> bytes | None:
    """The CA key blob of a host certificate, None if it cannot be read."""
    try:
        return parse_certificate(cert_blob).signature_key
    except ValueError:
        return None
