"""ssh_config files read as OpenSSH reads them (files in a temp dir, no network)."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest
from nbtunnel import SpecError
from nbtunnel.grammar.spec import parse
from nbtunnel.settings.resolve import forwards_from_config, resolve
from nbtunnel.settings.ssh_config import lookup


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _look(tmp_path: Path, text: str, host: str, user: str | None = None):
    config = _write(tmp_path / ".ssh" / "config", text)
    return lookup(
        [(str(config), str(tmp_path / ".ssh"))],
        host,
        user=user,
        local_user="me",
        home=str(tmp_path),
    )


def test_first_match_wins_and_patterns_negate(tmp_path: Path) -> None:
    text = """
# a comment
Host db-* !db-test
    User analyst
    Port 2200
Host db-prod
    User someone-else
    IdentityFile ~/.ssh/prod
Host *
    User fallback
    IdentityFile ~/.ssh/any
    Port=2222
"""
    prod = _look(tmp_path, text, "db-prod")
    assert prod.get("user") == "analyst" and prod.get("port") == "2200"
    assert prod.all("IdentityFile") == ["~/.ssh/prod", "~/.ssh/any"]  # these add up
    test = _look(tmp_path, text, "db-test")
    assert test.get("User") == "fallback" and test.get("port") == "2222"


def test_match_criteria(tmp_path: Path) -> None:
    text = """
Match host 10.0.* user root
    Port 1
Match originalhost gw
    HostName 10.0.0.9
Match host 10.0.0.9
    User ops
Match exec "true"
    Port 3
Match all
    Compression yes
"""
    found = _look(tmp_path, text, "gw")
    # HostName is set by the time "Match host" is read; exec never applies.
    assert found.get("hostname") == "10.0.0.9" and found.get("user") == "ops"
    assert found.get("port") is None and found.get("compression") == "yes"
    assert _look(tmp_path, text, "10.0.1.1", user="root").get("port") == "1"


def test_include_globs_relative_to_dot_ssh(tmp_path: Path) -> None:
    _write(tmp_path / ".ssh" / "conf.d" / "a.conf", "Host a\n  User from-a\n")
    _write(tmp_path / ".ssh" / "conf.d" / "b.conf", "Host *\n  User from-b\n")
    found = _look(tmp_path, "Include conf.d/*.conf\nHost *\n  User last\n", "a")
    assert found.get("user") == "from-a"
    assert _look(tmp_path, "Include conf.d/*.conf\n", "z").get("user") == "from-b"


def test_bad_config_lines_name_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"config line 2: No closing quotation"):
        _look(tmp_path, 'Host a\n  User "unterminated\n', "a")
    loop = tmp_path / ".ssh" / "config"
    with pytest.raises(SpecError, match="Include nested more than 16 deep"):
        _look(tmp_path, f"Include {loop}\n", "a")


def test_resolve_takes_the_config_and_the_command_line_wins(tmp_path: Path) -> None:
    _write(
        tmp_path / ".ssh" / "config",
        """
Host warehouse
    HostName %h.example.com
    User analyst
    Port 2200
    IdentityFile ~/.ssh/id_%r@%h
    UserKnownHostsFile ~/.ssh/known_%n
    StrictHostKeyChecking accept-new
    ProxyJump bastion
    LocalForward 9000 localhost:5432
    DynamicForward 1080
Host bastion
    HostName 10.1.2.3
    User jump
    IdentityFile ~/.ssh/bastion_key
""",
    )
    home = str(tmp_path)
    s = resolve(parse("-L 0:db:1 warehouse"), home=home)
    assert (s.host, s.user, s.port) == ("warehouse.example.com", "analyst", 2200)
    assert s.identities == (f"{home}/.ssh/id_analyst@warehouse.example.com",)
    assert s.known_hosts == f"{home}/.ssh/known_warehouse"
    assert s.strict_host_key_checking == "accept-new"
    (hop,) = s.jumps
    assert (hop.host, hop.user, hop.identities) == (
        "10.1.2.3",
        "jump",
        (f"{home}/.ssh/bastion_key",),
    )
    forwards = forwards_from_config(parse("-L 0:db:1 warehouse"), home=home)
    assert [str(f) for f in forwards] == ["-L 9000:localhost:5432", "-D 1080"]
    # The command line wins: -p, -l, -o and -J.
    s = resolve(
        parse("-p 22 -l me -o StrictHostKeyChecking=yes -J none -L 0:db:1 warehouse"),
        home=home,
    )
    assert (s.port, s.user, s.strict_host_key_checking, s.jumps) == (
        22,
        "me",
        "yes",
        (),
    )
    # -F replaces the files; -F none reads none.
    other = _write(tmp_path / "other.conf", "Host warehouse\n  User from-f\n")
    assert resolve(parse(f"-F {other} -L 0:db:1 warehouse"), home=home).user == "from-f"
    bare = resolve(parse("-F none -L 0:db:1 warehouse"), home=home)
    assert (bare.host, bare.user) == ("warehouse", getpass.getuser())


def test_a_proxyjump_loop_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / ".ssh" / "config", "Host a\n  ProxyJump a\n")
    with pytest.raises(SpecError, match="does a host's ProxyJump lead back"):
        resolve(parse("-L 0:db:1 a"), home=str(tmp_path))


def test_a_config_number_that_is_not_one_names_its_file(tmp_path: Path) -> None:
    config = _write(tmp_path / ".ssh" / "config", "Host a\n  Port twenty-two\n")
    with pytest.raises(
        SpecError, match=rf"Port 'twenty-two' is not a number \(in {config}"
    ):
        resolve(parse("-L 0:db:1 a"), home=str(tmp_path))


def test_host_aliases_for_completion(tmp_path: Path) -> None:
    from nbtunnel.settings.ssh_config import files_for, host_aliases

    dot = tmp_path / ".ssh"
    _write(
        dot / "config",
        """
Host bastion warehouse *.internal db-? !nope
    User analyst
Include conf.d/*.conf ~/elsewhere
Match host gpu
    Include nested
Host "quoted name" bastion
Host unbalanced "quote
Host ""
""",
    )
    _write(dot / "conf.d" / "b.conf", "Host beta\n")
    _write(dot / "conf.d" / "a.conf", "Host alpha\nInclude ../conf.d/a.conf\n")
    _write(dot / "nested", "Host gpu-box\n")
    _write(tmp_path / "elsewhere", "host lower-keyword\n")
    (dot / "unreadable.conf").mkdir()  # a directory: cannot be read, passed over
    _write(dot / "conf.d" / "z.conf", "Include ../unreadable.conf\nHost last\n")
    system = _write(tmp_path / "etc" / "ssh_config", "Host *\nHost sys-host\n")
    paths = [(str(dot / "config"), str(dot)), (str(system), str(system.parent))]
    assert host_aliases(paths, str(tmp_path)) == [
        "bastion",
        "warehouse",
        "alpha",  # Includes read in place, in order; a loop stops at ssh's depth
        "beta",
        "last",
        "lower-keyword",
        "gpu-box",  # whatever Match or Host it stands under
        "sys-host",  # not "quoted name" nor "": no command line takes them
    ]
    # The files are ssh's: -F's alone, none for -F none, else the user's
    # then the system's.
    own = _write(tmp_path / "own_config", "Host own\n")
    assert host_aliases(files_for(str(own), str(tmp_path)), str(tmp_path)) == ["own"]
    assert host_aliases(files_for("none", str(tmp_path)), str(tmp_path)) == []
    assert files_for(None, str(tmp_path))[0] == (str(dot / "config"), str(dot))
    assert host_aliases([(str(tmp_path / "missing"), str(dot))], str(tmp_path)) == []
