"""From a parsed line to connection settings, as ssh(1) reads the options."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest
from nbtunnel import SpecError
from nbtunnel.grammar.spec import parse
from nbtunnel.settings.resolve import ConnectSettings, resolve


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    s = resolve(parse("-L 0:db:5432 alice@example.com"), home=str(tmp_path))
    assert (s.host, s.port, s.user) == ("example.com", 22, "alice")
    assert s.known_hosts == str(tmp_path / ".ssh" / "known_hosts")
    assert s.strict_host_key_checking == "ask"  # ssh's default
    assert s.identities == ()
    assert s.agent_socket is None
    assert s.known_hosts_name == "example.com"


def test_default_identity_files_only_when_none_given(tmp_path: Path) -> None:
    ssh = tmp_path / ".ssh"
    ssh.mkdir()
    (ssh / "id_rsa").write_text("x")
    (ssh / "id_ed25519").write_text("x")
    s = resolve(parse("-L 0:db:5432 h"), home=str(tmp_path))
    assert s.identities == (str(ssh / "id_ed25519"), str(ssh / "id_rsa"))
    s = resolve(parse("-i ~/k -L 0:db:5432 h"), home=str(tmp_path))
    assert s.identities == (str(tmp_path / "k"),)


def test_command_line_wins_over_options(tmp_path: Path) -> None:
    line = "-p 2222 -l bob -o Port=3333 -o User=carol -L 0:db:5432 dave@h"
    s = resolve(parse(line), home=str(tmp_path))
    assert (s.port, s.user) == (2222, "bob")
    assert s.known_hosts_name == "[h]:2222"
    assert s.target == "bob@h:2222"


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        ("yes", "yes"),
        ("ask", "ask"),
        ("accept-new", "accept-new"),
        ("no", "no"),
        ("off", "no"),
    ],
)
def test_strict_host_key_checking(value: str, mode: str, tmp_path: Path) -> None:
    s = resolve(
        parse(f"-o StrictHostKeyChecking={value} -L 0:db:5432 h"), home=str(tmp_path)
    )
    assert s.strict_host_key_checking == mode


def test_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent.sock")
    line = (
        "-4 -C -g -c aes256-ctr -o ConnectTimeout=7 -o ServerAliveInterval=15 "
        "-o IdentitiesOnly=yes -o UserKnownHostsFile=~/kh -L 0:db:5432 ssh://u@[::1]:2200"
    )
    s = resolve(parse(line), home=str(tmp_path))
    assert s.host == "::1" and s.port == 2200
    assert s.address_family == "inet"
    assert s.compression and s.gateway_ports and s.identities_only
    assert s.ciphers == ("aes256-ctr",)
    assert s.connect_timeout == 7.0
    assert s.server_alive_interval == 15
    assert s.known_hosts == str(tmp_path / "kh")
    assert s.agent_socket == "/tmp/agent.sock"
    assert s.target == "u@[::1]:2200"
    assert s.known_hosts_name == "[::1]:2200"


def test_settings_round_trip_as_plain_data(tmp_path: Path) -> None:
    s = resolve(parse("-i a -i b -c aes128-ctr -L 0:db:5432 h"), home=str(tmp_path))
    assert ConnectSettings.from_dict(s.to_dict()) == s


def test_jump_hosts_get_their_own_defaults(tmp_path: Path) -> None:
    dot = tmp_path / ".ssh"
    dot.mkdir()
    (dot / "id_ed25519").write_text("key")
    s = resolve(
        parse("-J a@bastion:2200,b -i /keys/final -o Port=2222 -L 0:db:5432 c@h"),
        home=str(tmp_path),
    )
    first, second = s.jumps
    assert (first.user, first.host, first.port) == ("a", "bastion", 2200)
    assert second.host == "b" and second.port == 22
    # -i and -o are the final host's; a hop takes the default key.
    assert s.identities == ("/keys/final",) and s.port == 2222
    assert first.identities == (str(dot / "id_ed25519"),)
    assert ConnectSettings.from_dict(s.to_dict()) == s
    assert resolve(parse("-J none -L 0:db:5432 h"), home=str(tmp_path)).jumps == ()


def _config(tmp_path: Path, text: str, name: str = "config") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_proxycommand_keeps_its_quotes_and_expands_tokens(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        "Host db\n  HostName db.internal\n  Port 2200\n  User ann\n"
        "  ProxyCommand ssh -W '%h:%p' -l %r bastion # not a comment to ssh\n",
    )
    s = resolve(parse(f"-F {config} -L 0:x:1 db"), home=str(tmp_path))
    assert s.proxy_command == (
        "ssh -W 'db.internal:2200' -l ann bastion # not a comment to ssh"
    )
    assert s.jumps == ()


def test_the_first_of_proxyjump_and_proxycommand_wins(tmp_path: Path) -> None:
    first_jump = _config(
        tmp_path, "Host h\n  ProxyJump b\n  ProxyCommand nc %h %p\n", "jump"
    )
    s = resolve(parse(f"-F {first_jump} -L 0:x:1 h"), home=str(tmp_path))
    assert [j.host for j in s.jumps] == ["b"] and s.proxy_command is None
    first_command = _config(
        tmp_path, "Host h\n  ProxyCommand nc %h %p\n  ProxyJump b\n", "command"
    )
    s = resolve(parse(f"-F {first_command} -L 0:x:1 h"), home=str(tmp_path))
    assert s.jumps == () and s.proxy_command == "nc h 22"
    # The command line wins over the config, and "none" turns it off.
    s = resolve(parse(f"-F {first_jump} -o ProxyCommand=none -L 0:x:1 h"), home=".")
    assert s.jumps == () and s.proxy_command is None
    s = resolve(parse(f"-F {first_command} -J c -L 0:x:1 h"), home=str(tmp_path))
    assert [j.host for j in s.jumps] == ["c"] and s.proxy_command is None


def test_jump_and_proxycommand_on_one_line_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot both be given"):
        resolve(parse("-J b -o ProxyCommand=nc%20h -L 0:x:1 h"), home=str(tmp_path))


def test_identity_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", "/run/agent.sock")
    monkeypatch.setenv("OTHER_SOCK", "/run/other.sock")

    def agent(value: str) -> str | None:
        line = f"-F none -o IdentityAgent={value} -L 0:x:1 h"
        return resolve(parse(line), home=str(tmp_path)).agent_socket

    assert resolve(parse("-F none -L 0:x:1 h"), home=".").agent_socket == (
        "/run/agent.sock"
    )
    assert agent("none") is None
    assert agent("SSH_AUTH_SOCK") == "/run/agent.sock"
    assert agent("$OTHER_SOCK") == "/run/other.sock"
    assert agent("~/agent-%r") == str(tmp_path / "agent-") + getpass.getuser()


def test_which_methods_log_in(tmp_path: Path) -> None:
    def methods(*options: str) -> tuple[str, ...]:
        line = " ".join(f"-o {o}" for o in options) + " -F none -L 0:x:1 h"
        return resolve(parse(line), home=str(tmp_path)).auth_methods

    assert methods() == ("publickey", "keyboard-interactive", "password")
    assert methods("PasswordAuthentication=no") == ("publickey", "keyboard-interactive")
    assert methods("PreferredAuthentications=password,gssapi-with-mic,publickey") == (
        "password",
        "publickey",
    )
    assert methods("PubkeyAuthentication=no", "KbdInteractiveAuthentication=no") == (
        "password",
    )
    s = resolve(
        parse("-o NumberOfPasswordPrompts=1 -o BatchMode=yes -F none -L 0:x:1 h"),
        home=str(tmp_path),
    )
    assert (s.password_prompts, s.batch_mode) == (1, True)


def test_known_hosts_files(tmp_path: Path) -> None:
    s = resolve(parse("-F none -L 0:x:1 h"), home=str(tmp_path))
    assert s.known_hosts == str(tmp_path / ".ssh" / "known_hosts")
    assert s.known_hosts_files == (
        str(tmp_path / ".ssh" / "known_hosts"),
        str(tmp_path / ".ssh" / "known_hosts2"),
        "/etc/ssh/ssh_known_hosts",
        "/etc/ssh/ssh_known_hosts2",
    )
    config = _config(
        tmp_path,
        "Host *\n  UserKnownHostsFile ~/a /abs/b\n  GlobalKnownHostsFile none\n"
        "  HashKnownHosts yes\n",
    )
    s = resolve(parse(f"-F {config} -L 0:x:1 h"), home=str(tmp_path))
    assert s.known_hosts == str(tmp_path / "a")
    assert s.known_hosts_files == (str(tmp_path / "a"), "/abs/b")
    assert s.hash_known_hosts
    s = resolve(parse("-F none -o UserKnownHostsFile=none -L 0:x:1 h"), home=".")
    assert s.known_hosts == "/dev/null"


def test_certificate_files(tmp_path: Path) -> None:
    config = _config(tmp_path, "Host *\n  CertificateFile ~/.ssh/%r-cert.pub\n")
    s = resolve(
        parse(f"-F {config} -o CertificateFile=/c/one -L 0:x:1 ann@h"),
        home=str(tmp_path),
    )
    assert s.certificates == ("/c/one", str(tmp_path / ".ssh" / "ann-cert.pub"))


def test_settings_round_trip_through_the_protocol(tmp_path: Path) -> None:
    config = _config(
        tmp_path, "Host *\n  CertificateFile /c\n  ProxyCommand nc %h %p\n"
    )
    s = resolve(parse(f"-F {config} -L 0:x:1 h"), home=str(tmp_path))
    assert ConnectSettings.from_dict(s.to_dict()) == s
