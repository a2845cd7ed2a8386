"""Jump hosts (-J, -o ProxyJump) through real sshds.

The hosts behind the jump host listen on the namespace's own 127.0.0.1,
which nothing outside the namespace reaches: a forward that works went
through every hop.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from nbtunnel import ConnectError, HostKeyError, Manager

from tests.rig import clients
from tests.rig.sshd import SshServer, start_sshd

pytestmark = [pytest.mark.integration, pytest.mark.netns]


@pytest.fixture
def inner(rig) -> Iterator[list[SshServer]]:
    """Two sshds only the namespace reaches, accepting the rig's client key."""
    servers = []
    try:
        for _ in range(2):
            server = start_sshd(rig.netns, inner=True)
            servers.append(server)
            keys = server.workdir / "authorized_keys"
            keys.write_text(keys.read_text() + rig.sshd.client_key_pub.read_text())
        yield servers
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def home(tmp_path: Path, sshd, inner, monkeypatch) -> Path:
    """A HOME whose ~/.ssh gives the jump hosts their key and host keys, as a
    user's would (the command line's -i and -o are the final host's)."""
    dot = tmp_path / ".ssh"
    dot.mkdir(mode=0o700)
    (dot / "id_ed25519").write_bytes(sshd.client_key.read_bytes())
    (dot / "id_ed25519").chmod(0o600)
    known = [sshd.known_hosts.read_text()]
    known += [s.known_hosts.read_text() for s in inner]
    (dot / "known_hosts").write_text("".join(known))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return tmp_path


def _line(final: SshServer, jump: str, targets, *, option: bool = False) -> str:
    hop = ["-o", f"ProxyJump={jump}"] if option else ["-J", jump]
    return _through(final, targets, *hop)


def _through(final: SshServer, targets, *hop: str) -> str:
    """A -L to the echo target on ``final``, reached the way ``hop`` says."""
    return shlex.join(
        [
            *hop,
            "-p",
            str(final.port),
            "-i",
            str(final.client_key),
            "-o",
            f"UserKnownHostsFile={final.known_hosts}",
            "-L",
            f"0:{targets.host}:{targets.echo}",
            f"{final.user}@{final.host}",
        ]
    )


def _bastion(server: SshServer) -> str:
    return f"{server.user}@{server.host}:{server.port}"


@pytest.mark.parametrize("option", [False, True], ids=["-J", "ProxyJump"])
def test_a_host_behind_a_jump_host(
    manager: Manager, sshd, inner, home, targets, option: bool
) -> None:
    final = inner[0]
    assert clients.port_is_closed(final.host, final.port)  # not from here
    with manager.open(_line(final, _bastion(sshd), targets, option=option)) as t:
        data = b"through the bastion" * 1000
        assert (
            clients.echo_roundtrip("127.0.0.1", t.forwards[0].listen_port, data) == data
        )
    # The final host saw the login come from inside the namespace.
    assert "Accepted publickey" in final.log_tail()


def test_two_hops(manager: Manager, sshd, inner, home, targets) -> None:
    middle, final = inner
    hops = f"{_bastion(sshd)},{_bastion(middle)}"
    with manager.open(_line(final, hops, targets)) as t:
        assert (
            clients.echo_roundtrip("127.0.0.1", t.forwards[0].listen_port, b"2") == b"2"
        )
    assert "Accepted publickey" in middle.log_tail()
    assert "Accepted publickey" in final.log_tail()


def test_v_says_each_hop_and_its_steps(
    manager: Manager, sshd, inner, home, targets, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="nbtunnel")
    middle, final = inner
    hops = f"{_bastion(sshd)},{_bastion(middle)}"
    with manager.open("-vv " + _line(final, hops, targets)) as t:
        port = t.forwards[0].listen_port
        said = [
            r.getMessage().removeprefix(f"{t.name}: ")
            for r in caplog.records
            if getattr(r, "tunnel", None) == t.id
        ]
    bastion, hop2 = _bastion(sshd), _bastion(middle)
    first, second = f"jump host 1 ({bastion})", f"jump host 2 ({hop2})"
    in_order = [
        f"ProxyJump: {bastion} then {hop2}",
        f"Connecting to {first}",
        f"{first}: Connecting to {sshd.host} [{sshd.host}] port {sshd.port}.",
        f"{first}: Found key in {home}/.ssh/known_hosts:1",
        f"{first}: Offering public key: {home}/.ssh/id_ed25519 (ED25519 SHA256:",
        f"{first}: channel to {middle.host}:{middle.port} open",
        f"Connecting to {second}",
        f"{second}: Authenticated to {middle.host}:{middle.port} as "
        f"'{middle.user}' using \"publickey\".",
        f"{second}: channel to {final.host}:{final.port} open",
        f"Authenticated to {final.host}:{final.port} as '{final.user}' "
        'using "publickey".',
        "Local forwarding listening on 127.0.0.1 port "
        f"{port}: the server connects to {targets.host}:{targets.echo}",
    ]
    at = 0
    for expected in in_order:
        later = [i for i, line in enumerate(said) if line.startswith(expected)]
        assert [i for i in later if i >= at], (expected, said)
        at = min(i for i in later if i >= at)


def test_a_broken_middle_hop_is_named(
    manager: Manager, sshd, inner, home, targets
) -> None:
    final = inner[1]
    dead = f"{sshd.user}@127.0.0.1:{targets.refused_port}"
    with pytest.raises(ConnectError) as info:
        manager.open(_line(final, f"{_bastion(sshd)},{dead}", targets))
    text = str(info.value)
    assert text.startswith(
        f"jump host 1 ({sshd.user}@{sshd.host}:{sshd.port}) could not"
    )
    assert f"jump host 2 ({sshd.user}@127.0.0.1:{targets.refused_port})" in text
    assert "refused" in text.lower()


def test_a_jump_host_with_an_unknown_key_is_named(
    manager: Manager, sshd, inner, home, targets
) -> None:
    (home / ".ssh" / "known_hosts").write_text("")
    with pytest.raises(HostKeyError, match=r"^jump host 1 \(.*\): the host key of"):
        manager.open(_line(inner[0], _bastion(sshd), targets))


def _config(sshd, inner, tmp_path: Path) -> Path:
    """An ssh_config naming every host, each with its own key and host keys."""
    middle, final = inner
    text = f"""
Host bastion
    HostName {sshd.host}
    Port {sshd.port}
    User {sshd.user}
    IdentityFile {sshd.client_key}
    UserKnownHostsFile {sshd.known_hosts}
Host middle final
    HostName 127.0.0.1
    User {sshd.user}
Host middle
    Port {middle.port}
    IdentityFile {middle.client_key}
    UserKnownHostsFile {middle.known_hosts}
    ProxyJump bastion
Host final
    Port {final.port}
    IdentityFile {final.client_key}
    UserKnownHostsFile {final.known_hosts}
    ProxyJump middle
"""
    path = tmp_path / "ssh_config"
    path.write_text(text)
    return path


def test_a_config_alias(manager: Manager, sshd, inner, targets, tmp_path: Path) -> None:
    config = _config(sshd, inner, tmp_path)
    line = f"-F {config} -L 0:{targets.host}:{targets.echo} bastion"
    with manager.open(line) as t:
        assert (
            clients.echo_roundtrip("127.0.0.1", t.forwards[0].listen_port, b"a") == b"a"
        )


def test_proxyjump_in_the_config_two_hops(
    manager: Manager, sshd, inner, targets, tmp_path: Path
) -> None:
    config = _config(sshd, inner, tmp_path)
    # final's ProxyJump is middle, whose ProxyJump is bastion: each hop with
    # its own key and known_hosts from its own section.
    line = f"-F {config} -L 0:{targets.host}:{targets.echo} final"
    with manager.open(line) as t:
        data = b"two hops from the config" * 100
        assert (
            clients.echo_roundtrip("127.0.0.1", t.forwards[0].listen_port, data) == data
        )
    assert "Accepted publickey" in inner[1].log_tail()


def _proxy_command(bastion: SshServer, pidfile: Path) -> str:
    """OpenSSH's own client as the ProxyCommand: ``ssh -W %h:%p bastion``."""
    ssh = shlex.join(
        [
            "ssh",
            "-F",
            "none",
            "-o",
            "BatchMode=yes",
            "-i",
            str(bastion.client_key),
            "-o",
            f"UserKnownHostsFile={bastion.known_hosts}",
            "-p",
            str(bastion.port),
            "-W",
            "%h:%p",
            bastion.destination,
        ]
    )
    # The shell writes its PID, then becomes ssh: the test can see it end.
    return f"sh -c {shlex.quote(f'echo $$ > {pidfile}; exec {ssh}')}"


def test_proxycommand_reaches_a_host_behind_the_bastion(
    manager: Manager, sshd, inner, targets, tmp_path: Path, caplog
) -> None:
    final = inner[0]
    pidfile = tmp_path / "proxy.pid"
    command = _proxy_command(sshd, pidfile)
    line = _through(final, targets, "-o", f"ProxyCommand={command}")
    caplog.set_level(logging.INFO, logger="nbtunnel")
    with manager.open("-v " + line) as t:
        said = [r.getMessage() for r in caplog.records if hasattr(r, "verbosity")]
        ran = command.replace("%h", final.host).replace("%p", str(final.port))
        assert f"{t.name}: Executing proxy command: exec {ran}" in said
        data = b"through ssh -W" * 1000
        assert (
            clients.echo_roundtrip("127.0.0.1", t.forwards[0].listen_port, data) == data
        )
        pid = int(pidfile.read_text())
        assert Path(f"/proc/{pid}").exists()
    # The proxy lives as long as the tunnel.
    assert clients.wait_until(lambda: not Path(f"/proc/{pid}").exists(), 5)
    assert "Accepted publickey" in final.log_tail()


def test_proxycommand_in_the_config_with_tokens(
    manager: Manager, sshd, inner, targets, tmp_path: Path
) -> None:
    final = inner[0]
    pidfile = tmp_path / "proxy.pid"
    config = tmp_path / "ssh_config"
    config.write_text(
        f"""
Host final
    HostName {final.host}
    Port {final.port}
    User {final.user}
    IdentityFile {final.client_key}
    UserKnownHostsFile {final.known_hosts}
    ProxyCommand {_proxy_command(sshd, pidfile)}
"""
    )
    with manager.open(f"-F {config} -L 0:{targets.host}:{targets.echo} final") as t:
        assert (
            clients.echo_roundtrip("127.0.0.1", t.forwards[0].listen_port, b"c") == b"c"
        )
