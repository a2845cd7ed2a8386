"""known_hosts files and OpenSSH certificates, checked against ssh-keygen itself."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import shutil
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nbtunnel.settings.certificates import CERT_HOST, CERT_USER, parse_certificate
from nbtunnel.settings.known_hosts import (
    DEFAULT_PORT,
    Entry,
    KnownHosts,
    append,
    entry_line,
    hash_name,
    known_name,
)

from tests.capabilities import IS_ROOT, POSIX_MODES

KEYGEN = shutil.which("ssh-keygen")
FOREVER = 0xFFFF_FFFF_FFFF_FFFF


# -- helpers ----------------------------------------------------------------------


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _fake_blob(key_type: str, n: int) -> bytes:
    """A key blob of the right shape; distinct per ``n``."""
    return _string(key_type.encode()) + _string(bytes([n]) * 32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _line(hosts: str, n: int, key_type: str = "ssh-ed25519", marker: str = "") -> str:
    prefix = f"{marker} " if marker else ""
    return f"{prefix}{hosts} {key_type} {_b64(_fake_blob(key_type, n))}"


def _write(path: Path, *lines: str) -> str:
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def _load(tmp_path: Path, *lines: str) -> KnownHosts:
    return KnownHosts.load([_write(tmp_path / "known_hosts", *lines)])


def _lines(entries: list[Entry]) -> list[int]:
    return [e.line for e in entries]


def _split_name(name: str) -> tuple[str, int]:
    """The (host, port) that known_name() turns into ``name``."""
    match = re.fullmatch(r"\[(.*)\]:(\d+)", name)
    return (match.group(1), int(match.group(2))) if match else (name, DEFAULT_PORT)


# -- names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "name"),
    [
        ("example.com", 22, "example.com"),
        ("example.com", 2222, "[example.com]:2222"),
        ("10.0.0.1", 22, "10.0.0.1"),
        ("::1", 2222, "[::1]:2222"),
        ("h", 0, "h"),  # put_host_port(): 0 means "no port given"
    ],
)
def test_known_name(host: str, port: int, name: str) -> None:
    assert known_name(host, port) == name


def test_plain_name(tmp_path: Path) -> None:
    known = _load(tmp_path, _line("other.com", 1), _line("example.com", 2))
    [entry] = known.lookup("example.com", 22)
    assert entry == Entry(
        marker="",
        key_type="ssh-ed25519",
        blob=_fake_blob("ssh-ed25519", 2),
        path=str(tmp_path / "known_hosts"),
        line=2,
        hashed=False,
    )
    assert known.lookup("example.com", 2222) == []
    assert known.lookup("example", 22) == []
    assert known.lookup("xexample.com", 22) == []


def test_bracketed_port_names(tmp_path: Path) -> None:
    known = _load(
        tmp_path,
        _line("[h]:2222", 1),
        _line("h", 2),
        _line("[h]:22", 3),  # never used: ssh calls port 22 plain "h"
        _line("[h]:*", 4),
    )
    assert _lines(known.lookup("h", 2222)) == [1, 4]
    assert _lines(known.lookup("h", 22)) == [2]
    assert _lines(known.lookup("h", 2223)) == [4]
    assert _lines(known.lookup("hh", 2222)) == []


def test_brackets_are_literal_not_a_character_class(tmp_path: Path) -> None:
    known = _load(tmp_path, _line("[ab]", 1))
    assert known.lookup("a", 22) == []
    assert _lines(known.lookup("[ab]", 22)) == [1]


def test_comma_lists(tmp_path: Path) -> None:
    known = _load(tmp_path, _line("a.example,b.example,10.1.2.3", 1))
    for host in ("a.example", "b.example", "10.1.2.3"):
        assert _lines(known.lookup(host, 22)) == [1]
    assert known.lookup("c.example", 22) == []
    assert known.lookup("a.example,b.example", 22) == []


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        ("*.example.com", ["a.example.com", "a.b.example.com"], ["example.com"]),
        ("host?", ["host1", "hostx"], ["host", "host10"]),
        ("10.0.*.1", ["10.0.0.1", "10.0.255.1"], ["10.1.0.1"]),
        ("*", ["anything", "[h]:2222"], []),
        ("[*]:2222", ["[h]:2222", "[10.0.0.1]:2222"], ["h", "[h]:2223"]),
        ("a*b*c", ["abc", "axxbyyc"], ["acb", "abcx"]),
    ],
)
def test_wildcards(
    tmp_path: Path, pattern: str, matching: list[str], not_matching: list[str]
) -> None:
    known = _load(tmp_path, _line(pattern, 1))
    for name in matching:
        assert _lines(known.lookup(*_split_name(name))) == [1], name
    for name in not_matching:
        assert known.lookup(*_split_name(name)) == [], name


@pytest.mark.parametrize(
    "hosts", ["!bad.example.com,*.example.com", "*.example.com,!bad.example.com"]
)
def test_negation_vetoes_the_line(tmp_path: Path, hosts: str) -> None:
    known = _load(tmp_path, _line(hosts, 1), _line("bad.example.com", 2))
    assert _lines(known.lookup("good.example.com", 22)) == [1]
    assert _lines(known.lookup("bad.example.com", 22)) == [2]


def test_negation_alone_matches_nothing(tmp_path: Path) -> None:
    known = _load(tmp_path, _line("!bad", 1))
    assert known.lookup("good", 22) == []
    assert known.lookup("bad", 22) == []


def test_case_insensitive(tmp_path: Path) -> None:
    known = _load(tmp_path, _line("Example.COM,*.Wild.ORG", 1))
    assert _lines(known.lookup("eXample.com", 22)) == [1]
    assert _lines(known.lookup("A.WILD.org", 22)) == [1]


# -- hashed names -----------------------------------------------------------------


def test_hash_name_round_trip() -> None:
    salt = bytes(range(20))
    hashed = hash_name("example.com", salt)
    assert hashed == hash_name("example.com", salt)
    magic, b64salt, b64hash = hashed.split("|")[1:]
    assert magic == "1"
    assert base64.b64decode(b64salt) == salt
    digest = hmac.new(salt, b"example.com", hashlib.sha1).digest()
    assert base64.b64decode(b64hash) == digest
    assert hash_name("example.org", salt) != hashed


def test_hash_name_uses_a_fresh_salt() -> None:
    first, second = hash_name("example.com"), hash_name("example.com")
    assert first != second
    assert len(base64.b64decode(first.split("|")[2])) == 20


def test_hashed_entries(tmp_path: Path) -> None:
    known = _load(
        tmp_path,
        _line(hash_name("example.com"), 1),
        _line(hash_name("[example.com]:2222"), 2),
        _line(hash_name("*.example.com"), 3),
    )
    [entry] = known.lookup("example.com", 22)
    assert (entry.line, entry.hashed) == (1, True)
    assert _lines(known.lookup("EXAMPLE.com", 22)) == [1]  # looked up lowercased
    assert _lines(known.lookup("example.com", 2222)) == [2]
    assert known.lookup("example.org", 22) == []
    # A hashed field is one exact name, never a pattern.
    assert known.lookup("a.example.com", 22) == []
    assert _lines(known.lookup("*.example.com", 22)) == [3]


def test_entry_line_hashes_the_lowercased_name(tmp_path: Path) -> None:
    blob = _fake_blob("ssh-ed25519", 1)
    line = entry_line("Example.COM", "ssh-ed25519", blob, hashed=True)
    assert line.startswith("|1|")
    assert "example" not in line.lower()
    known = _load(tmp_path, line)
    assert [e.blob for e in known.lookup("example.com", 22)] == [blob]
    assert [e.blob for e in known.lookup("EXAMPLE.COM", 22)] == [blob]


@pytest.mark.parametrize(
    "field",
    [
        "|1|" + _b64(b"s" * 19) + "|" + _b64(b"h" * 20),  # salt must be 20 bytes
        "|1|" + _b64(b"s" * 20),  # no hash
        "|1||" + _b64(b"h" * 20),  # no salt
        "|1|!!!|" + _b64(b"h" * 20),  # salt not base64
        "|2|" + _b64(b"s" * 20) + "|" + _b64(b"h" * 20),
        "|example.com",
    ],
)
def test_malformed_hash_is_skipped(tmp_path: Path, field: str) -> None:
    known = _load(tmp_path, _line(field, 1), _line("example.com", 2))
    assert known.skipped == [
        (str(tmp_path / "known_hosts"), 1, "malformed hashed host name")
    ]
    assert _lines(known.lookup("example.com", 22)) == [2]


# -- markers ----------------------------------------------------------------------


def test_markers(tmp_path: Path) -> None:
    known = _load(
        tmp_path,
        _line("h", 1),
        _line("*", 2, marker="@revoked"),
        _line("h", 3, "ssh-rsa"),
        _line("*.example,h", 4, marker="@cert-authority"),
        _line("other", 5, marker="@revoked"),
        _line("h", 6),
    )
    assert [(e.line, e.marker) for e in known.lookup("h", 22)] == [
        (1, ""),
        (2, "revoked"),
        (3, ""),
        (4, "cert-authority"),
        (6, ""),
    ]
    assert known.keys_for("h", 22) == {
        "ssh-ed25519": [_fake_blob("ssh-ed25519", 1), _fake_blob("ssh-ed25519", 6)],
        "ssh-rsa": [_fake_blob("ssh-rsa", 3)],
    }
    revoked = known.revoked("h", 22, _fake_blob("ssh-ed25519", 2))
    assert revoked is not None and revoked.line == 2
    assert known.revoked("h", 22, _fake_blob("ssh-ed25519", 1)) is None
    assert known.revoked("h", 22, _fake_blob("ssh-ed25519", 5)) is None  # not for h
    other = known.revoked("other", 22, _fake_blob("ssh-ed25519", 5))
    assert other is not None and other.line == 5
    assert _lines(known.authorities("h", 22)) == [4]
    assert _lines(known.authorities("a.example", 22)) == [4]
    assert known.authorities("other", 22) == []
    assert known.keys_for("other", 22) == {}


# -- comments, malformed lines, files --------------------------------------------


def test_comments_blank_and_malformed_lines(tmp_path: Path) -> None:
    ed = _b64(_fake_blob("ssh-ed25519", 1))
    stray_bits = _b64(_fake_blob("ssh-ed25519", 1) + b"x")  # ends in "=="
    stray_bits = stray_bits[:-3] + chr(ord(stray_bits[-3]) + 1) + "=="
    path = _write(
        tmp_path / "known_hosts",
        "# a comment",
        "",
        "   \t  ",
        "   # an indented comment",
        f"h ssh-ed25519 {ed} a trailing comment",  # 5: fine
        f" \th\tssh-ed25519\t{ed}",  # 6: fine
        f"h ssh-ed25519 {ed}\r",  # 7: fine (CRLF)
        "h",  # 8
        "h ssh-ed25519",  # 9
        "h ssh-ed25519 !!!notbase64",  # 10
        f"h ssh-ed25519 {ed[:-1]}",  # 11: wrong length
        f"h ssh-ed25519 {stray_bits}",  # 12: bits beyond the last byte
        f"@bogus h ssh-ed25519 {ed}",  # 13
        f"@revoked @revoked h ssh-ed25519 {ed}",  # 14
        f"h ssh-rsa {ed}",  # 15: type and key disagree
        f"h # ssh-ed25519 {ed}",  # 16
        f"@revoked h ssh-ed25519 {ed}",  # 17: fine
        "@revoked",  # 18
    )
    known = KnownHosts.load([path])
    assert _lines(known.lookup("h", 22)) == [5, 6, 7, 17]
    assert [(line, reason) for _, line, reason in known.skipped] == [
        (8, "no key after the host names"),
        (9, "no key after the key type"),
        (10, "key is not valid base64"),
        (11, "key is not valid base64"),
        (12, "key is not valid base64"),
        (13, "unknown marker '@bogus'"),
        (14, "more than one marker"),
        (15, "key type 'ssh-rsa' does not match the key ('ssh-ed25519')"),
        (16, "no key after the host names"),
        (18, "no key after the host names"),
    ]
    assert {p for p, _, _ in known.skipped} == {path}
    assert [e.line for e in known.entries] == [5, 6, 7, 17]


def test_several_files_in_order(tmp_path: Path) -> None:
    first = _write(tmp_path / "first", _line("h", 1), _line("x", 2), _line("h", 3))
    second = _write(tmp_path / "second", _line("h", 4), "junk")
    known = KnownHosts.load([first, second])
    assert [(e.path, e.line) for e in known.lookup("h", 22)] == [
        (first, 1),
        (first, 3),
        (second, 1),
    ]
    assert known.skipped == [(second, 2, "no key after the host names")]
    again = KnownHosts.load([second, first])
    assert [e.path for e in again.lookup("h", 22)] == [second, first, first]


def test_missing_file_is_skipped(tmp_path: Path) -> None:
    present = _write(tmp_path / "present", _line("h", 1))
    (tmp_path / "a_file").write_text("")
    known = KnownHosts.load(
        [str(tmp_path / "missing"), present, str(tmp_path / "a_file" / "below")]
    )
    assert _lines(known.lookup("h", 22)) == [1]
    assert known.skipped == []
    assert KnownHosts.load([]).lookup("h", 22) == []


def test_unreadable_file_raises(tmp_path: Path) -> None:
    (tmp_path / "a_directory").mkdir()
    with pytest.raises(OSError):
        KnownHosts.load([str(tmp_path / "a_directory")])


@pytest.mark.skipif(
    IS_ROOT or not POSIX_MODES, reason="root, or a system without POSIX modes, reads it"
)
def test_file_without_read_permission_raises(tmp_path: Path) -> None:
    path = _write(tmp_path / "known_hosts", _line("h", 1))
    os.chmod(path, 0)
    with pytest.raises(PermissionError):
        KnownHosts.load([path])


# -- writing ----------------------------------------------------------------------


@pytest.fixture
def umask022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_entry_line() -> None:
    blob = _fake_blob("ssh-ed25519", 1)
    assert entry_line("[h]:2222", "ssh-ed25519", blob, hashed=False) == (
        f"[h]:2222 ssh-ed25519 {_b64(blob)}"
    )
    hashed = entry_line("h", "ssh-ed25519", blob, hashed=True)
    assert re.fullmatch(
        r"\|1\|[A-Za-z0-9+/=]{28}\|[A-Za-z0-9+/=]{28} ssh-ed25519 \S+", hashed
    )


@pytest.mark.parametrize(
    ("name", "key_type"),
    [
        ("a b", "ssh-ed25519"),
        ("", "ssh-ed25519"),
        ("#h", "ssh-ed25519"),
        ("@h", "ssh-ed25519"),
        ("|h", "ssh-ed25519"),
        ("h\n", "ssh-ed25519"),
        ("h", "ssh ed25519"),
        ("h", ""),
    ],
)
def test_entry_line_refuses_what_would_misread(name: str, key_type: str) -> None:
    with pytest.raises(ValueError, match="cannot be written"):
        entry_line(name, key_type, b"blob", hashed=False)


def test_append_creates_directory_and_file(tmp_path: Path, umask022: None) -> None:
    path = tmp_path / "home" / ".ssh" / "known_hosts"
    blob = _fake_blob("ssh-ed25519", 1)
    append(str(path), "h", "ssh-ed25519", blob, hashed=False)
    if POSIX_MODES:
        # Every directory it made, not only the last (os.makedirs' mode).
        assert (tmp_path / "home").stat().st_mode & 0o777 == 0o700
        assert path.parent.stat().st_mode & 0o777 == 0o700
        assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == f"h ssh-ed25519 {_b64(blob)}\n"
    append(str(path), "h", "ssh-rsa", _fake_blob("ssh-rsa", 2), hashed=True)
    known = KnownHosts.load([str(path)])
    assert [(e.line, e.hashed) for e in known.lookup("h", 22)] == [
        (1, False),
        (2, True),
    ]
    assert path.read_text().endswith("\n") and path.read_text().count("\n") == 2


def test_append_fixes_a_missing_final_newline(tmp_path: Path, umask022: None) -> None:
    path = tmp_path / "known_hosts"
    first = _line("h", 1)
    path.write_text(first)  # hand-edited, no final newline
    path.chmod(0o644)
    append(str(path), "h", "ssh-ed25519", _fake_blob("ssh-ed25519", 2), hashed=False)
    assert path.read_text() == f"{first}\n{_line('h', 2)}\n"
    if POSIX_MODES:
        assert path.stat().st_mode & 0o777 == 0o644  # an existing file keeps its mode
    assert _lines(KnownHosts.load([str(path)]).lookup("h", 22)) == [1, 2]


def test_append_to_an_empty_file_adds_no_blank_line(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text("")
    append(str(path), "h", "ssh-ed25519", _fake_blob("ssh-ed25519", 1), hashed=False)
    assert path.read_text() == _line("h", 1) + "\n"


def test_append_raises_oserror(tmp_path: Path) -> None:
    blob = _fake_blob("ssh-ed25519", 1)
    (tmp_path / "a_directory").mkdir()
    with pytest.raises(OSError):
        append(str(tmp_path / "a_directory"), "h", "ssh-ed25519", blob, hashed=False)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(OSError):
        append(str(tmp_path / "a_file" / "kh"), "h", "ssh-ed25519", blob, hashed=False)


# -- against the real ssh-keygen ---------------------------------------------------


@dataclass(frozen=True)
class Key:
    private: Path
    key_type: str
    blob: bytes

    @property
    def public_text(self) -> str:
        return f"{self.key_type} {_b64(self.blob)}"


def _keygen(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    # openssh-client is a set-up requirement (README): missing, it fails.
    assert KEYGEN is not None, "ssh-keygen (openssh-client) is not installed"
    return subprocess.run(
        [KEYGEN, *args], capture_output=True, text=True, check=check, timeout=60
    )


def _read_public(path: Path) -> tuple[str, bytes]:
    key_type, encoded = path.read_text().split()[:2]
    return key_type, base64.b64decode(encoded)


KEY_ARGS = {
    "ed25519": ["-t", "ed25519"],
    "rsa": ["-t", "rsa", "-b", "2048"],
    "ecdsa": ["-t", "ecdsa", "-b", "256"],
    "ecdsa384": ["-t", "ecdsa", "-b", "384"],
    "ecdsa521": ["-t", "ecdsa", "-b", "521"],
}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Key]:
    directory = tmp_path_factory.mktemp("keys")
    made = {}
    for name, args in KEY_ARGS.items():
        private = directory / name
        _keygen("-q", *args, "-N", "", "-C", "", "-f", str(private))
        made[name] = Key(private, *_read_public(directory / f"{name}.pub"))
    return made


_FOUND = re.compile(r"^# Host .* found: line (\d+) ?(CA|REVOKED)?\s*$", re.MULTILINE)
_MARKER_WORDS = {None: "", "CA": "cert-authority", "REVOKED": "revoked"}


def _keygen_finds(path: Path, name: str) -> list[tuple[int, str]]:
    """(line, marker) of every line ``ssh-keygen -F`` matches, keys parsed (-l)."""
    result = _keygen("-l", "-F", name, "-f", str(path), check=False)
    assert result.returncode in (0, 1), result.stderr
    return [(int(m[1]), _MARKER_WORDS[m[2]]) for m in _FOUND.finditer(result.stdout)]


def test_lookup_agrees_with_ssh_keygen(tmp_path: Path, keys: dict[str, Key]) -> None:
    ed, rsa, ec = (keys[k].public_text for k in ("ed25519", "rsa", "ecdsa"))
    ec_stray = ec[:-2] + chr(ord(ec[-2]) + 1) + "="  # nonzero bits after the last byte
    path = tmp_path / "known_hosts"
    _write(
        path,
        "# header",
        f"host1,host2 {ed}",
        f"*.example.com {ed}",
        f"!bad.example.com,*.example.com {rsa}",
        f"[h]:2222 {ed}",
        f"[h]:* {ec}",
        f"h {ed} comment",
        f"host? {rsa}",
        f"@revoked *.example.com {ec}",
        f"@cert-authority [*]:2222 {ed}",
        f"!*.example.com,* {rsa}",
        f"[ab] {ed}",
        f"HOST1 {ec}",
        f"{hash_name('hashed.example')} {ed}",
        f"{hash_name('[hashed.example]:2222')} {rsa}",
        f"host1 ssh-rsa {ed.split()[1]}",
        f"host1 {ec_stray}",
        f"@bogus host1 {ed}",
        f"host1 ssh-ed25519 !!!{ed.split()[1]}",
        f"host1,!host2 {ec}",
        f"{'y' * 1022},x {ed}",  # the longest pattern OpenSSH will match
        f"q,{'y' * 1023} {ed}",  # one too long: the whole line stops matching
    )
    known = KnownHosts.load([str(path)])
    assert len(known.skipped) == 4
    names = [
        "host1",
        "HOST1",
        "host2",
        "host10",
        "hostx",
        "a.example.com",
        "bad.example.com",
        "example.com",
        "[h]:2222",
        "[h]:2223",
        "h",
        "a",
        "[ab]",
        "x",
        "hashed.example",
        "[hashed.example]:2222",
        "[x]:2222",
        "q",
    ]
    for name in names:
        ours = [(e.line, e.marker) for e in known.lookup(*_split_name(name))]
        assert ours == _keygen_finds(path, name), name


def test_ssh_keygen_hashed_file_finds_the_same(
    tmp_path: Path, keys: dict[str, Key]
) -> None:
    ed, rsa, ec = (keys[k].public_text for k in ("ed25519", "rsa", "ecdsa"))
    path = tmp_path / "known_hosts"
    _write(
        path,
        f"a.example,B.example {ed}",
        f"[h]:2222 {rsa}",
        f"c.example {ec} comment",
        f"*.wild {ed}",
        f"@revoked rev.example {rsa}",
    )
    plain = KnownHosts.load([str(path)])
    _keygen("-H", "-f", str(path))
    hashed = KnownHosts.load([str(path)])
    assert hashed.skipped == []
    queries = [
        ("a.example", 22),
        ("b.example", 22),
        ("B.EXAMPLE", 22),
        ("h", 2222),
        ("h", 22),
        ("c.example", 22),
        ("x.wild", 22),
        ("rev.example", 22),
    ]
    for host, port in queries:
        want = [(e.marker, e.key_type, e.blob) for e in plain.lookup(host, port)]
        got = [(e.marker, e.key_type, e.blob) for e in hashed.lookup(host, port)]
        assert got == want, (host, port)
    assert [e.hashed for e in hashed.lookup("a.example", 22)] == [True]
    assert [e.hashed for e in hashed.lookup("h", 2222)] == [True]
    # ssh-keygen's salt, run through hash_name(), gives ssh-keygen's hash.
    first = path.read_text().split()[0]
    salt = base64.b64decode(first.split("|")[2])
    assert hash_name("a.example", salt) == first


def test_ssh_keygen_finds_appended_hashed_lines(
    tmp_path: Path, keys: dict[str, Key]
) -> None:
    path = tmp_path / "ssh" / "known_hosts"
    written = [
        ("host1", 22, keys["ed25519"]),
        ("host2", 2222, keys["rsa"]),
        ("Host3", 22, keys["ecdsa"]),
    ]
    for host, port, key in written:
        append(str(path), known_name(host, port), key.key_type, key.blob, hashed=True)
    assert "host" not in path.read_text().lower()
    for host, port, key in written:
        name = known_name(host, port).lower()
        result = _keygen("-F", name, "-f", str(path), check=False)
        assert result.returncode == 0, (name, result.stderr)
        assert _b64(key.blob) in result.stdout
    assert _keygen("-F", "host2", "-f", str(path), check=False).returncode == 1


# -- certificates -------------------------------------------------------------------


def _sign(tmp_path: Path, subject: Key, ca: Key, *args: str) -> bytes:
    public = tmp_path / "subject.pub"
    public.write_text(subject.public_text + "\n")
    _keygen("-q", "-s", str(ca.private), *args, str(public))
    key_type, blob = _read_public(tmp_path / "subject-cert.pub")
    assert key_type == subject.key_type + "-cert-v01@openssh.com"
    return blob


def _strings(data: bytes) -> list[bytes]:
    out = []
    while data:
        (size,) = struct.unpack(">I", data[:4])
        out.append(data[4 : 4 + size])
        data = data[4 + size :]
    return out


def _certified_fields(key: Key) -> bytes:
    """A public key blob without its leading key type string."""
    return key.blob[4 + len(key.key_type) :]


CERT_PAIRS = [
    ("ed25519", "rsa"),
    ("rsa", "ecdsa"),
    ("ecdsa", "ed25519"),
    ("ecdsa384", "ecdsa521"),
    ("ecdsa521", "ecdsa384"),
]
SIGNATURE_TYPES = {
    "ed25519": {b"ssh-ed25519"},
    "rsa": {b"rsa-sha2-512", b"rsa-sha2-256", b"ssh-rsa"},
    "ecdsa": {b"ecdsa-sha2-nistp256"},
    "ecdsa384": {b"ecdsa-sha2-nistp384"},
    "ecdsa521": {b"ecdsa-sha2-nistp521"},
}


@pytest.mark.parametrize(("subject", "ca"), CERT_PAIRS)
def test_host_certificate(
    tmp_path: Path, keys: dict[str, Key], subject: str, ca: str
) -> None:
    before = int(time.time())
    blob = _sign(
        tmp_path,
        keys[subject],
        keys[ca],
        "-I",
        "myid",
        "-h",
        "-n",
        "host1,host2",
        "-V",
        "-5m:+1h",
        "-z",
        "42",
    )
    after = int(time.time())
    cert = parse_certificate(blob)
    assert cert.key_type == keys[subject].key_type + "-cert-v01@openssh.com"
    assert (cert.key_id, cert.serial, cert.cert_type) == ("myid", 42, CERT_HOST)
    assert cert.principals == ("host1", "host2")
    assert cert.signature_key == keys[ca].blob
    assert cert.public_key == _certified_fields(keys[subject])
    assert cert.plain_key == keys[subject].blob
    assert len(cert.nonce) >= 16
    assert before - 300 <= cert.valid_after <= after - 300
    assert cert.valid_before - cert.valid_after == 3900
    assert cert.valid_at(time.time())
    assert cert.valid_at(cert.valid_after)
    assert not cert.valid_at(cert.valid_after - 1)
    assert not cert.valid_at(cert.valid_before)
    assert (cert.critical_options, cert.extensions) == ((), ())
    assert cert.signed_data + _string(cert.signature) == blob
    assert _strings(cert.signature)[0] in SIGNATURE_TYPES[ca]


@pytest.mark.parametrize(("subject", "ca"), CERT_PAIRS[:3])
def test_user_certificate(
    tmp_path: Path, keys: dict[str, Key], subject: str, ca: str
) -> None:
    blob = _sign(
        tmp_path,
        keys[subject],
        keys[ca],
        "-I",
        "alice@laptop",
        "-n",
        "alice,bob",
        "-V",
        "always:forever",
        "-z",
        "7",
        "-O",
        "force-command=/bin/true",
        "-O",
        "source-address=10.0.0.0/8",
    )
    cert = parse_certificate(blob)
    assert (cert.key_id, cert.serial, cert.cert_type) == ("alice@laptop", 7, CERT_USER)
    assert cert.principals == ("alice", "bob")
    assert (cert.valid_after, cert.valid_before) == (0, FOREVER)
    assert cert.valid_at(0) and cert.valid_at(time.time()) and cert.valid_at(2.0**64)
    assert cert.critical_options == (
        ("force-command", _string(b"/bin/true")),
        ("source-address", _string(b"10.0.0.0/8")),
    )
    assert dict(cert.extensions) == {
        "permit-X11-forwarding": b"",
        "permit-agent-forwarding": b"",
        "permit-port-forwarding": b"",
        "permit-pty": b"",
        "permit-user-rc": b"",
    }
    assert cert.signature_key == keys[ca].blob
    assert cert.signed_data + _string(cert.signature) == blob


def test_dsa_certificate(tmp_path: Path, keys: dict[str, Key]) -> None:
    private = tmp_path / "dsa"
    made = _keygen("-q", "-t", "dsa", "-N", "", "-f", str(private), check=False)
    if made.returncode != 0:
        pytest.skip(f"this ssh-keygen makes no DSA keys: {made.stderr.strip()}")
    dsa = Key(private, *_read_public(tmp_path / "dsa.pub"))
    cert = parse_certificate(_sign(tmp_path, dsa, keys["ed25519"], "-I", "d", "-h"))
    assert cert.key_type == "ssh-dss-cert-v01@openssh.com"
    assert cert.public_key == _certified_fields(dsa)
    assert cert.principals == ()


@pytest.mark.parametrize("subject", ["ed25519", "rsa", "ecdsa"])
def test_truncated_or_padded_certificate(
    tmp_path: Path, keys: dict[str, Key], subject: str
) -> None:
    blob = _sign(tmp_path, keys[subject], keys["ed25519"], "-I", "id", "-n", "a,b")
    parse_certificate(blob)
    for size in range(len(blob)):
        with pytest.raises(ValueError, match="truncated"):
            parse_certificate(blob[:size])
    with pytest.raises(ValueError, match="1 bytes after its signature"):
        parse_certificate(blob + b"\0")


def _synthetic(
    key_type: bytes = b"ssh-ed25519-cert-v01@openssh.com",
    key_fields: tuple[bytes, ...] = (b"k" * 32,),
    cert_type: int = CERT_HOST,
    key_id: bytes = b"id",
    principals: bytes = _string(b"h"),
    options: bytes = b"",
) -> bytes:
    return b"".join(
        [
            _string(key_type),
            _string(b"nonce"),
            *map(_string, key_fields),
            struct.pack(">QI", 1, cert_type),
            _string(key_id),
            _string(principals),
            struct.pack(">QQ", 0, FOREVER),
            _string(options),
            _string(b""),
            _string(b""),
            _string(b"ca"),
            _string(b"sig"),
        ]
    )


def test_synthetic_certificates() -> None:
    cert = parse_certificate(_synthetic())
    assert (cert.nonce, cert.public_key, cert.signature_key, cert.signature) == (
        b"nonce",
        _string(b"k" * 32),
        b"ca",
        b"sig",
    )
    sk = parse_certificate(
        _synthetic(b"sk-ssh-ed25519-cert-v01@openssh.com", (b"k" * 32, b"ssh:"))
    )
    assert sk.public_key == _string(b"k" * 32) + _string(b"ssh:")
    ecdsa = _synthetic(b"ecdsa-sha2-nistp384-cert-v01@openssh.com", (b"nistp384", b"Q"))
    assert parse_certificate(ecdsa).public_key == _string(b"nistp384") + _string(b"Q")
    options = _string(b"force-command") + _string(_string(b"/bin/true"))
    assert parse_certificate(_synthetic(options=options)).critical_options == (
        ("force-command", _string(b"/bin/true")),
    )


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (
            _synthetic(key_type=b"ssh-foo-cert-v01@openssh.com"),
            "'ssh-foo-cert-v01@openssh.com'",
        ),
        (_fake_blob("ssh-ed25519", 1), "not a supported OpenSSH certificate type"),
        (_synthetic(cert_type=3), "neither user"),
        (_synthetic(key_id=b"a\0b"), "NUL byte in its key id"),
        (
            _synthetic(principals=_string(b"a") + b"\0\0\0\5b"),
            "principals is truncated",
        ),
        (
            _synthetic(options=_string(b"force-command")),
            "critical options is truncated",
        ),
        (
            _synthetic(
                b"ecdsa-sha2-nistp256-cert-v01@openssh.com", (b"nistp384", b"Q")
            ),
            "is for curve",
        ),
    ],
)
def test_malformed_certificates(blob: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_certificate(blob)
