"""From a parsed line to connection settings, as ssh(1) reads the options."""

from __future__ import annotations

from pathlib import Path

import pytest
from nbtunnel.config import ConnectSettings, resolve
from nbtunnel.spec import parse


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
