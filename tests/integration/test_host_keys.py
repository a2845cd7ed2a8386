"""known_hosts as OpenSSH writes it, against real sshds: hashed names, patterns
with negation, several files, ``@revoked`` and ``@cert-authority`` with host
certificates made by the real ssh-keygen.

Every connection runs with StrictHostKeyChecking=yes (unless a test says
otherwise), so only a real match in the files lets it through; every refusal
leaves no session on the server and the known_hosts files as they were.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from nbtunnel import HostKeyError, Manager

from tests.rig import clients
from tests.rig.sshd import SSH_KEYGEN, SshServer, start_sshd

pytestmark = pytest.mark.integration


def _line(
    server: SshServer, targets, *extra: str, known_hosts: Path | str | None
) -> str:
    """None for known_hosts: the test's extra tokens or config file say it."""
    tokens = ["-p", str(server.port), "-i", str(server.client_key)]
    tokens += ["-o", "IdentitiesOnly=yes"]
    # The first value of an option wins, as in ssh: a test's own go first.
    tokens += extra
    if known_hosts is not None:
        tokens += ["-o", f"UserKnownHostsFile={known_hosts}"]
    tokens += ["-o", "GlobalKnownHostsFile=none"]
    tokens += ["-o", "StrictHostKeyChecking=yes"]
    tokens += ["-L", f"0:{targets.host}:{targets.echo}"]
    return shlex.join([*tokens, server.destination])


def _keygen(path: Path) -> Path:
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True
    )
    return path


def _public(path: Path) -> str:
    """``keytype base64`` of a public key file (a key's ``.pub`` or a CA's)."""
    return " ".join(path.read_text().split()[:2])


def _name(server: SshServer) -> str:
    return f"[{server.host}]:{server.port}"


def _openssh_finds(name: str, known: Path) -> bool:
    """Whether OpenSSH's own lookup (ssh-keygen -F) matches name in the file."""
    found = subprocess.run(
        [SSH_KEYGEN, "-F", name, "-f", str(known)], capture_output=True, text=True
    )
    return found.returncode == 0


def _refused(
    manager: Manager, server: SshServer, line: str, *files: Path
) -> HostKeyError:
    """The HostKeyError of opening line; nothing left on the server or in files."""
    before = {f: f.read_bytes() if f.exists() else None for f in files}
    with pytest.raises(HostKeyError) as info:
        manager.open(line)
    assert clients.sessions_gone(server)
    assert manager.tunnels() == []
    assert {f: f.read_bytes() if f.exists() else None for f in files} == before
    return info.value


# -- plain host keys ----------------------------------------------------------


def test_a_file_hashed_by_ssh_keygen_is_read(
    manager: Manager, fresh_sshd: SshServer, targets, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(fresh_sshd.known_hosts.read_text())
    subprocess.run(
        [SSH_KEYGEN, "-H", "-f", str(known)], check=True, capture_output=True
    )
    hashed = known.read_text()
    assert hashed.startswith("|1|") and fresh_sshd.host not in hashed
    with manager.open(_line(fresh_sshd, targets, known_hosts=known)) as t:
        assert clients.echoes(t, b"host ok")
    assert known.read_text() == hashed


def test_a_hashed_line_for_another_port_does_not_match(
    manager: Manager, fresh_sshd: SshServer, targets, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    other = f"[{fresh_sshd.host}]:{fresh_sshd.port + 1}"
    known.write_text(f"{other} {_public(fresh_sshd.host_key_pub)}\n")
    subprocess.run(
        [SSH_KEYGEN, "-H", "-f", str(known)], check=True, capture_output=True
    )
    assert not _openssh_finds(_name(fresh_sshd), known)
    error = _refused(
        manager, fresh_sshd, _line(fresh_sshd, targets, known_hosts=known), known
    )
    assert "is unknown" in str(error)


def _prefix(server: SshServer) -> str:
    return server.host.rsplit(".", 1)[0]


@pytest.mark.parametrize(
    "pattern",
    [
        "[{prefix}.*]:{port},!other.example",
        "[{host}]:*",
        "nothere.example,[{host_but_last}?]:{port}",
        "*,![{host}]:{other_port}",
    ],
)
def test_a_pattern_line_matches(
    manager: Manager, fresh_sshd: SshServer, targets, tmp_path: Path, pattern: str
) -> None:
    hosts = pattern.format(
        prefix=_prefix(fresh_sshd),
        host=fresh_sshd.host,
        host_but_last=fresh_sshd.host[:-1],
        port=fresh_sshd.port,
        other_port=fresh_sshd.port + 1,
    )
    known = tmp_path / "known_hosts"
    known.write_text(f"{hosts} {_public(fresh_sshd.host_key_pub)}\n")
    assert _openssh_finds(_name(fresh_sshd), known)  # the premise, by OpenSSH
    with manager.open(_line(fresh_sshd, targets, known_hosts=known)) as t:
        assert clients.echoes(t, b"host ok")


@pytest.mark.parametrize(
    "pattern",
    [
        "[{prefix}.*]:{port},![{host}]:{port}",
        "*,![{prefix}.*]:*",
        "![{host}]:{port},[{host}]:{port}",
    ],
)
def test_a_negated_pattern_excludes_the_host(
    manager: Manager, fresh_sshd: SshServer, targets, tmp_path: Path, pattern: str
) -> None:
    hosts = pattern.format(
        prefix=_prefix(fresh_sshd), host=fresh_sshd.host, port=fresh_sshd.port
    )
    known = tmp_path / "known_hosts"
    known.write_text(f"{hosts} {_public(fresh_sshd.host_key_pub)}\n")
    assert not _openssh_finds(_name(fresh_sshd), known)
    error = _refused(
        manager, fresh_sshd, _line(fresh_sshd, targets, known_hosts=known), known
    )
    assert f"the host key of {_name(fresh_sshd)} is unknown" in str(error)


# -- several files ----------------------------------------------------------------


@pytest.mark.parametrize("first", ["missing", "other hosts"])
def test_user_known_hosts_file_with_two_files_reads_the_second(
    manager: Manager, fresh_sshd: SshServer, targets, tmp_path: Path, first: str
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    if first == "other hosts":
        other = _keygen(tmp_path / "other_host_key")
        one.write_text(f"other.example {_public(Path(f'{other}.pub'))}\n")
    two.write_text(fresh_sshd.known_hosts.read_text())
    before = one.read_text() if one.exists() else None
    with manager.open(_line(fresh_sshd, targets, known_hosts=f"{one} {two}")) as t:
        assert clients.echoes(t, b"host ok")
    assert (one.read_text() if one.exists() else None) == before


def test_two_files_from_a_config_file(
    manager: Manager, fresh_sshd: SshServer, targets, tmp_path: Path
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    two.write_text(fresh_sshd.known_hosts.read_text())
    config = tmp_path / "config"
    config.write_text(f"Host *\n    UserKnownHostsFile {one} {two}\n")
    line = _line(fresh_sshd, targets, "-F", str(config), known_hosts=None)
    with manager.open(line) as t:
        assert clients.echoes(t, b"host ok")


@pytest.mark.parametrize("where", ["option", "config"])
def test_a_quoted_known_hosts_path_with_a_space_is_one_file(
    manager: Manager, fresh_sshd: SshServer, targets, tmp_path: Path, where: str
) -> None:
    """As ssh (argv_split): quotes keep a path with blanks in one piece."""
    folder = tmp_path / "known hosts"
    folder.mkdir()
    known = folder / "file"
    known.write_text(fresh_sshd.known_hosts.read_text())
    value = f'"{known}" {tmp_path / "second"}'
    extra = ["-F", "none", "-o", f"UserKnownHostsFile={value}"]
    if where == "config":
        config = tmp_path / "config"
        config.write_text(f"Host *\n    UserKnownHostsFile {value}\n")
        extra = ["-F", str(config)]
    with manager.open(_line(fresh_sshd, targets, *extra, known_hosts=None)) as t:
        assert clients.echoes(t, b"host ok")


def test_the_key_only_in_the_global_file_is_known(
    manager: Manager, fresh_sshd: SshServer, targets, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    system = tmp_path / "ssh_known_hosts"
    system.write_text(fresh_sshd.known_hosts.read_text())
    line = _line(
        fresh_sshd,
        targets,
        "-o",
        f"GlobalKnownHostsFile={system}",
        known_hosts=empty,
    )
    with manager.open(line) as t:
        assert clients.echoes(t, b"host ok")
    assert empty.read_text() == ""


# -- @revoked -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["yes", "no"])
def test_a_revoked_host_key_is_refused_naming_the_line(
    manager: Manager, fresh_sshd: SshServer, targets, tmp_path: Path, mode: str
) -> None:
    known = tmp_path / "known_hosts"
    key = _public(fresh_sshd.host_key_pub)
    # Known by name too: revocation wins over any other line.
    known.write_text(
        f"# revoked after the break-in\n@revoked * {key}\n{_name(fresh_sshd)} {key}\n"
    )
    line = _line(
        fresh_sshd,
        targets,
        "-o",
        f"StrictHostKeyChecking={mode}",
        known_hosts=known,
    )
    error = _refused(manager, fresh_sshd, line, known)
    message = str(error)
    assert "REVOKED" in message
    assert f"{known} line 2" in message
    assert _name(fresh_sshd) in message


def test_a_revoked_line_for_another_host_does_not_apply(
    manager: Manager, fresh_sshd: SshServer, targets, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    key = _public(fresh_sshd.host_key_pub)
    known.write_text(f"@revoked other.example {key}\n{_name(fresh_sshd)} {key}\n")
    with manager.open(_line(fresh_sshd, targets, known_hosts=known)) as t:
        assert clients.echoes(t, b"host ok")


# -- host certificates ------------------------------------------------------------


@pytest.fixture
def host_ca(tmp_path: Path) -> Path:
    return _keygen(tmp_path / "host_ca")


@pytest.fixture
def cert_sshd(rig, tmp_path: Path) -> Iterator[SshServer]:
    """An sshd that serves host_ed25519-cert.pub beside its host key, once a
    test has signed it (start_sshd makes the host key as it starts)."""
    workdir = tmp_path / "sshd"
    cert = workdir / "host_ed25519-cert.pub"
    with start_sshd(
        rig.netns, workdir=workdir, options={"HostCertificate": cert}
    ) as server:
        yield server


def _sign(server: SshServer, ca: Path, *args: str) -> Path:
    """Certify the server's host key with ca, then restart it to serve the cert."""
    key = server.host_key_pub
    subprocess.run(
        [SSH_KEYGEN, "-q", "-s", str(ca), "-I", "nbtunnel-test", *args, str(key)],
        check=True,
        capture_output=True,
    )
    server.restart(hard=False)
    return server.workdir / "host_ed25519-cert.pub"


def _ca_only(tmp_path: Path, ca: Path, hosts: str = "*", *more: str) -> Path:
    known = tmp_path / "known_hosts"
    lines = [f"@cert-authority {hosts} {_public(Path(f'{ca}.pub'))}", *more]
    known.write_text("".join(f"{x}\n" for x in lines))
    return known


def test_a_host_certificate_from_a_known_authority_connects(
    manager: Manager, cert_sshd: SshServer, host_ca: Path, targets, tmp_path: Path
) -> None:
    cert = _sign(cert_sshd, host_ca, "-h", "-n", cert_sshd.host, "-V", "-5m:+1h")
    listing = subprocess.run(
        [SSH_KEYGEN, "-L", "-f", str(cert)], capture_output=True, text=True, check=True
    ).stdout
    assert "host certificate" in listing
    known = _ca_only(tmp_path, host_ca)
    # Only the authority is known: the plain host key alone would be unknown.
    assert cert_sshd.host_key_pub.read_text().split()[1] not in known.read_text()
    with manager.open(_line(cert_sshd, targets, known_hosts=known)) as t:
        assert clients.echoes(t, b"host ok")


def test_a_certificate_without_principals_is_for_any_host(
    manager: Manager, cert_sshd: SshServer, host_ca: Path, targets, tmp_path: Path
) -> None:
    _sign(cert_sshd, host_ca, "-h")
    known = _ca_only(tmp_path, host_ca, f"[{_prefix(cert_sshd)}.*]:*")
    with manager.open(_line(cert_sshd, targets, known_hosts=known)) as t:
        assert clients.echoes(t, b"host ok")


@pytest.mark.parametrize(
    ("sign", "why"),
    [
        pytest.param(
            ("-h", "-n", "other.example,also.example"),
            "it names other.example, also.example, not {host}",
            id="other-principals",
        ),
        pytest.param(
            ("-h", "-n", "{host}", "-V", "20200101:20200102"),
            "it is expired or not yet valid",
            id="expired",
        ),
        pytest.param(
            ("-h", "-n", "{host}", "-V", "+1d:+2d"),
            "it is expired or not yet valid",
            id="not-yet-valid",
        ),
        # sshd 9.2 serves a user certificate as HostCertificate without a word.
        pytest.param(
            ("-n", "{host}"),
            "it is a user certificate, not a host one",
            id="user-certificate",
        ),
    ],
)
def test_a_host_certificate_that_does_not_fit_is_refused(
    manager: Manager,
    cert_sshd: SshServer,
    host_ca: Path,
    targets,
    tmp_path: Path,
    sign: tuple[str, ...],
    why: str,
) -> None:
    _sign(cert_sshd, host_ca, *(a.format(host=cert_sshd.host) for a in sign))
    known = _ca_only(tmp_path, host_ca)
    line = _line(cert_sshd, targets, known_hosts=known)
    message = str(_refused(manager, cert_sshd, line, known))
    assert f"the host key of {_name(cert_sshd)} is unknown" in message
    why = why.format(host=cert_sshd.host)
    assert f"Its certificate was not accepted: {why}." in message


def test_a_certificate_from_another_authority_is_refused(
    manager: Manager, cert_sshd: SshServer, host_ca: Path, targets, tmp_path: Path
) -> None:
    other_ca = _keygen(tmp_path / "other_ca")
    _sign(cert_sshd, other_ca, "-h", "-n", cert_sshd.host)
    known = _ca_only(tmp_path, host_ca)
    message = str(
        _refused(
            manager, cert_sshd, _line(cert_sshd, targets, known_hosts=known), known
        )
    )
    assert "no @cert-authority line for this host names its signer" in message


def test_an_authority_for_other_hosts_does_not_vouch(
    manager: Manager, cert_sshd: SshServer, host_ca: Path, targets, tmp_path: Path
) -> None:
    _sign(cert_sshd, host_ca, "-h", "-n", cert_sshd.host)
    known = _ca_only(tmp_path, host_ca, "*.example.com,!other.example.com")
    line = _line(cert_sshd, targets, known_hosts=known)
    message = str(_refused(manager, cert_sshd, line, known))
    assert f"the host key of {_name(cert_sshd)} is unknown" in message


@pytest.mark.parametrize(
    ("mode", "key_known"),
    [("yes", False), ("yes", True), ("no", False)],
    ids=["strict", "strict-key-also-known", "not-strict"],
)
def test_a_certificate_of_a_revoked_authority_is_a_revoked_key(
    manager: Manager,
    cert_sshd: SshServer,
    host_ca: Path,
    targets,
    tmp_path: Path,
    mode: str,
    key_known: bool,
) -> None:
    """As ssh (hostfile.c, check_key_not_revoked): revoking the CA revokes
    every certificate it signed, whatever else the files say; ssh refuses
    under strict checking and otherwise turns port forwarding off."""
    _sign(cert_sshd, host_ca, "-h", "-n", cert_sshd.host)
    ca = _public(Path(f"{host_ca}.pub"))
    more = [f"@revoked * {ca}"]
    if key_known:
        more.append(f"{_name(cert_sshd)} {_public(cert_sshd.host_key_pub)}")
    known = _ca_only(tmp_path, host_ca, "*", *more)
    line = _line(
        cert_sshd, targets, "-o", f"StrictHostKeyChecking={mode}", known_hosts=known
    )
    message = str(_refused(manager, cert_sshd, line, known))
    assert "REVOKED" in message
    assert f"{known} line 2" in message


def test_a_revoked_host_key_is_refused_with_its_certificate(
    manager: Manager, cert_sshd: SshServer, host_ca: Path, targets, tmp_path: Path
) -> None:
    _sign(cert_sshd, host_ca, "-h", "-n", cert_sshd.host)
    key = _public(cert_sshd.host_key_pub)
    known = _ca_only(tmp_path, host_ca, "*", f"@revoked * {key}")
    line = _line(cert_sshd, targets, known_hosts=known)
    message = str(_refused(manager, cert_sshd, line, known))
    assert "REVOKED" in message
    assert f"{known} line 2" in message
