"""User certificates and ssh-agent, against real sshds and a real ssh-agent.

The certificate sshd trusts a user CA (TrustedUserCAKeys) and has an empty
authorized_keys: a key gets in only with a certificate the CA signed for
the login user.  The agent tests run with HOME empty, so no default key in
~/.ssh can stand in for the agent's.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from nbtunnel import AuthenticationError, Manager

from tests.rig import clients
from tests.rig.sshd import SSH_KEYGEN, SshServer, start_sshd

pytestmark = pytest.mark.integration


def _keygen(path: Path) -> Path:
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True
    )
    return path


def _fingerprint(public: Path) -> str:
    return subprocess.run(
        [SSH_KEYGEN, "-l", "-E", "sha256", "-f", str(public)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[1]


def _certify(ca: Path, key: Path, principals: str, cert: Path | None = None) -> Path:
    """Sign key.pub with ca for principals; the certificate ends up at cert
    (default: ssh-keygen's key-cert.pub beside the key)."""
    subprocess.run(
        [
            *(SSH_KEYGEN, "-q", "-s", str(ca), "-I", "nbtunnel-user"),
            *("-n", principals, "-V", "-5m:+1h", f"{key}.pub"),
        ],
        check=True,
        capture_output=True,
    )
    made = Path(f"{key}-cert.pub")
    if cert is None:
        return made
    made.rename(cert)
    return cert


def _line(server: SshServer, targets, *extra: str) -> str:
    tokens = ["-p", str(server.port), *extra]
    tokens += ["-o", f"UserKnownHostsFile={server.known_hosts}"]
    tokens += ["-o", "StrictHostKeyChecking=yes"]
    tokens += ["-L", f"0:{targets.host}:{targets.echo}"]
    return shlex.join([*tokens, server.destination])


def _offered_with_certificate(server: SshServer) -> bool:
    """Whether sshd saw (and refused) a key with a certificate."""
    lines = server.log_tail(400).splitlines()
    return any("Failed publickey for" in x and "ED25519-CERT" in x for x in lines)


# -- user certificates ---------------------------------------------------------


@pytest.fixture
def user_ca(tmp_path: Path) -> Path:
    return _keygen(tmp_path / "user_ca")


@pytest.fixture
def ca_sshd(rig, tmp_path: Path, user_ca: Path) -> Iterator[SshServer]:
    """An sshd that lets in only keys with a certificate of user_ca."""
    empty = tmp_path / "authorized_keys"
    empty.write_text("")
    options = {
        "TrustedUserCAKeys": f"{user_ca}.pub",
        "AuthorizedKeysFile": empty,
    }
    with start_sshd(rig.netns, options=options) as server:
        yield server


@pytest.fixture
def user_key(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    keys.mkdir()
    return _keygen(keys / "id_user")


def _certificate_login(server: SshServer, key: Path, ca: Path) -> None:
    """sshd logged a login with key's certificate from ca (as _certify() made it)."""
    words = (
        f"ED25519-CERT {_fingerprint(Path(f'{key}.pub'))} ID nbtunnel-user "
        f"(serial 0) CA ED25519 {_fingerprint(Path(f'{ca}.pub'))}"
    )
    accepted = f"Accepted publickey for {server.user} from "
    assert any(
        accepted in x and x.endswith(words) for x in clients.accepted_logins(server)
    ), server.log_tail()


def test_certificate_file_logs_in(
    manager: Manager,
    ca_sshd: SshServer,
    user_ca: Path,
    user_key: Path,
    targets,
    tmp_path: Path,
) -> None:
    # Not beside the key: only CertificateFile can find it.
    cert = _certify(user_ca, user_key, ca_sshd.user, tmp_path / "elsewhere.pub")
    line = _line(
        ca_sshd,
        targets,
        "-i",
        str(user_key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"CertificateFile={cert}",
    )
    with manager.open(line) as t:
        assert clients.echoes(t, b"cert ok")
    _certificate_login(ca_sshd, user_key, user_ca)


def test_the_certificate_beside_the_key_is_picked_up(
    manager: Manager, ca_sshd: SshServer, user_ca: Path, user_key: Path, targets
) -> None:
    cert = _certify(user_ca, user_key, ca_sshd.user)
    assert cert == user_key.with_name("id_user-cert.pub")
    line = _line(ca_sshd, targets, "-i", str(user_key), "-o", "IdentitiesOnly=yes")
    with manager.open(line) as t:
        assert clients.echoes(t, b"cert ok")
    _certificate_login(ca_sshd, user_key, user_ca)


def test_without_a_certificate_the_key_is_refused(
    manager: Manager, ca_sshd: SshServer, user_key: Path, targets
) -> None:
    line = _line(ca_sshd, targets, "-i", str(user_key), "-o", "IdentitiesOnly=yes")
    with pytest.raises(AuthenticationError) as info:
        manager.open(line)
    message = str(info.value)
    assert "refused every key offered" in message
    assert str(user_key) in message
    assert clients.accepted_logins(ca_sshd) == []
    assert clients.sessions_gone(ca_sshd)


def test_a_certificate_for_another_principal_is_refused(
    manager: Manager,
    ca_sshd: SshServer,
    user_ca: Path,
    user_key: Path,
    targets,
) -> None:
    cert = _certify(user_ca, user_key, "someone-else,nobody-here")
    line = _line(ca_sshd, targets, "-i", str(user_key), "-o", "IdentitiesOnly=yes")
    with pytest.raises(AuthenticationError) as info:
        manager.open(line)
    message = str(info.value)
    assert "refused every key offered" in message
    # Offered with the certificate, then alone: both were refused.
    assert f"{user_key} + {cert}" in message
    assert "with its certificate" in message
    assert clients.accepted_logins(ca_sshd) == []
    log = ca_sshd.log_tail(100)
    assert "Certificate invalid: name is not a listed principal" in log
    assert _offered_with_certificate(ca_sshd)
    assert clients.sessions_gone(ca_sshd)


def test_a_certificate_of_another_ca_is_refused(
    manager: Manager, ca_sshd: SshServer, user_key: Path, targets, tmp_path: Path
) -> None:
    other_ca = _keygen(tmp_path / "other_ca")
    cert = _certify(other_ca, user_key, ca_sshd.user)
    line = _line(ca_sshd, targets, "-i", str(user_key), "-o", "IdentitiesOnly=yes")
    with pytest.raises(AuthenticationError, match="refused every key offered"):
        manager.open(line)
    assert cert.exists()
    assert _offered_with_certificate(ca_sshd)
    assert clients.accepted_logins(ca_sshd) == []
    assert clients.sessions_gone(ca_sshd)


# -- ssh-agent --------------------------------------------------------------------


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Path]:
    """A real ssh-agent listening on a socket of its own; stopped by its PID."""
    program = shutil.which("ssh-agent")
    # Not a platform limit: openssh-client is part of the README's setup.
    assert program is not None, "ssh-agent is missing: apt-get install openssh-client"
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(
        [program, "-D", "-a", str(sock)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        clients.wait_until(sock.exists, 5)
        yield sock
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        proc.wait(10)


def _ssh_add(sock: Path, key: Path) -> str:
    """Load key into the agent (SSH_AUTH_SOCK for ssh-add only); its listing."""
    env = {"SSH_AUTH_SOCK": str(sock), "PATH": "/usr/bin:/bin"}
    subprocess.run(
        ["ssh-add", "-q", str(key)], env=env, check=True, capture_output=True
    )
    listed = subprocess.run(
        ["ssh-add", "-l"], env=env, check=True, capture_output=True, text=True
    ).stdout
    assert _fingerprint(Path(f"{key}.pub")) in listed
    return listed


@pytest.fixture
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME without ~/.ssh: no default key or known_hosts to fall back on."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.mark.parametrize("form", ["path", "$VAR", "SSH_AUTH_SOCK"])
def test_identity_agent_logs_in_with_the_agents_key(
    manager: Manager,
    fresh_sshd: SshServer,
    agent: Path,
    empty_home: Path,
    targets,
    monkeypatch: pytest.MonkeyPatch,
    form: str,
) -> None:
    _ssh_add(agent, fresh_sshd.client_key)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    if form == "path":
        value = str(agent)
    elif form == "$VAR":
        monkeypatch.setenv("NBTUNNEL_TEST_AGENT", str(agent))
        value = "$NBTUNNEL_TEST_AGENT"
    else:
        monkeypatch.setenv("SSH_AUTH_SOCK", str(agent))
        value = "SSH_AUTH_SOCK"
    with manager.open(_line(fresh_sshd, targets, "-o", f"IdentityAgent={value}")) as t:
        assert clients.echoes(t, b"cert ok")
    accepted = clients.accepted_logins(fresh_sshd)
    assert any(_fingerprint(fresh_sshd.client_key_pub) in a for a in accepted)


def test_without_identity_agent_the_agent_is_not_found(
    manager: Manager,
    fresh_sshd: SshServer,
    agent: Path,
    empty_home: Path,
    targets,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The control for the test above: with SSH_AUTH_SOCK unset and no
    IdentityAgent, nothing finds the agent."""
    _ssh_add(agent, fresh_sshd.client_key)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    with pytest.raises(AuthenticationError, match="no key to log in"):
        manager.open(_line(fresh_sshd, targets))
    assert clients.sessions_gone(fresh_sshd)


def test_identity_agent_none_ignores_ssh_auth_sock(
    manager: Manager,
    fresh_sshd: SshServer,
    agent: Path,
    empty_home: Path,
    targets,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _ssh_add(agent, fresh_sshd.client_key)
    monkeypatch.setenv("SSH_AUTH_SOCK", str(agent))
    # The same line without IdentityAgent=none logs in through the agent.
    with manager.open(_line(fresh_sshd, targets)) as t:
        assert clients.echoes(t, b"cert ok")
    with pytest.raises(AuthenticationError, match="no key to log in"):
        manager.open(_line(fresh_sshd, targets, "-o", "IdentityAgent=none"))
    assert clients.sessions_gone(fresh_sshd)


def test_an_agent_key_with_its_certificate_file(
    manager: Manager,
    ca_sshd: SshServer,
    user_ca: Path,
    user_key: Path,
    agent: Path,
    empty_home: Path,
    targets,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ssh signs with the agent's key and sends the certificate from the file
    (ssh_config(5), CertificateFile); the private key is nowhere else."""
    # Certified first, then loaded: with no key-cert.pub beside it, ssh-add
    # loads the plain key only.
    cert = _certify(user_ca, user_key, ca_sshd.user, tmp_path / "elsewhere.pub")
    assert "CERT" not in _ssh_add(agent, user_key)
    user_key.unlink()
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    line = _line(
        ca_sshd,
        targets,
        "-o",
        f"IdentityAgent={agent}",
        "-o",
        f"CertificateFile={cert}",
    )
    with manager.open(line) as t:
        assert clients.echoes(t, b"cert ok")
    _certificate_login(ca_sshd, user_key, user_ca)


def test_an_agent_holding_the_key_and_its_certificate(
    manager: Manager,
    ca_sshd: SshServer,
    user_ca: Path,
    user_key: Path,
    agent: Path,
    empty_home: Path,
    targets,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ssh-add loads key-cert.pub beside the key too: the agent then lists the
    certificate as a key of its own, which ssh offers like any other."""
    _certify(user_ca, user_key, ca_sshd.user)
    assert "ED25519-CERT" in _ssh_add(agent, user_key)
    user_key.unlink()
    Path(f"{user_key}-cert.pub").unlink()
    monkeypatch.setenv("SSH_AUTH_SOCK", str(agent))
    with manager.open(_line(ca_sshd, targets)) as t:
        assert clients.echoes(t, b"cert ok")
    _certificate_login(ca_sshd, user_key, user_ca)
