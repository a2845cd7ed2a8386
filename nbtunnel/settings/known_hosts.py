"""OpenSSH ``known_hosts`` files, read and written without paramiko.

A line of a ``known_hosts`` file (sshd(8), "SSH_KNOWN_HOSTS FILE FORMAT")::

    [@revoked|@cert-authority] hostpatterns keytype base64-key [comment]

The host field is either a comma-separated list of patterns (``*``, ``?``,
``!negation``, matched case-insensitively) or one hashed name
``|1|base64(salt)|base64(HMAC-SHA1(salt, name))``.  A server on a port other
than 22 is known as ``[host]:port``.

This module follows OpenSSH's ``hostfile.c`` and ``match.c`` rather than
paramiko's ``HostKeys``, which ignores markers and negation and stops at the
first matching line:

- lookups return every matching line, in file order, markers included;
- a line OpenSSH would skip (unknown marker, missing key, bad base64, a key
  whose blob names another type, a malformed hash) is skipped here too, and
  recorded in :attr:`KnownHosts.skipped` so a caller can say why;
- like ssh(1), which lowercases the host name before it looks anything up,
  lookups and hashed lines use the ASCII-lowercased name.

The certificates an ``@cert-authority`` line vouches for are parsed by
``certificates``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .wire import WireReader

DEFAULT_PORT = 22

MARKER_REVOKED = "revoked"
MARKER_CA = "cert-authority"
_MARKERS = {"@revoked": MARKER_REVOKED, "@cert-authority": MARKER_CA}

_HASH_MAGIC = "|1|"
_SALT_LEN = 20  # OpenSSH's extract_salt() accepts only a SHA-1-sized salt
_MAX_SALT_B64 = 1024  # ... and gives up on a longer encoded one
_MAX_SUBPATTERN = 1023  # match_pattern_list() stops matching at a longer one
_BLANKS = " \t"
_WORD = re.compile(r"([^ \t]*)[ \t]*(.*)", re.DOTALL)

# Host names, patterns and hashes are compared as the bytes OpenSSH sees;
# surrogateescape keeps a non-UTF-8 file readable and round-trippable.
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"


def known_name(host: str, port: int) -> str:
    """The name ``host:port`` has in a known_hosts file, as OpenSSH writes it."""
    # put_host_port() treats port 0 as "not given", like the default.
    if port in (0, DEFAULT_PORT):
        return host
    return f"[{host}]:{port}"


def _encode(text: str) -> bytes:
    return text.encode(_ENCODING, _ERRORS)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str) -> bytes | None:
    try:
        data = base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, or text that is not ASCII
        return None
    # OpenSSH's b64_pton() also rejects stray bits in the last character,
    # which Python lets through; only canonical text survives re-encoding.
    return data if _b64(data) == text else None


def _hash_bytes(name: bytes, salt: bytes) -> str:
    digest = hmac.new(salt, name, hashlib.sha1).digest()
    return f"{_HASH_MAGIC}{_b64(salt)}|{_b64(digest)}"


def hash_name(name: str, salt: bytes | None = None) -> str:
    """The hashed form ``|1|salt|hash`` of ``name``, as ``ssh-keygen -H`` writes it.

    ``name`` is hashed exactly as given; ssh itself only ever looks up
    lowercase names (see :func:`entry_line`).
    """
    if salt is None:
        salt = os.urandom(_SALT_LEN)
    return _hash_bytes(_encode(name), salt)


# -- host patterns ------------------------------------------------------------


@dataclass(frozen=True)
class _Pattern:
    negated: bool
    regex: re.Pattern[bytes] | None  # None: too long for OpenSSH to match


def _compile_glob(pattern: bytes) -> re.Pattern[bytes]:
    # Not fnmatch: it reads "[h]:2222" as a character class, while OpenSSH's
    # match_pattern() knows only * and ?, and everything else is literal.
    parts = []
    for piece in re.split(rb"(\*+|\?)", pattern):
        if piece.startswith(b"*"):
            parts.append(b".*")
        elif piece == b"?":
            parts.append(b".")
        else:
            parts.append(re.escape(piece))
    return re.compile(b"".join(parts), re.DOTALL)


def _parse_patterns(field: str) -> tuple[_Pattern, ...]:
    pieces = _encode(field).lower().split(b",")
    # match_pattern_list() stops at the end of the text, so a trailing comma
    # adds no empty pattern (a leading or doubled one does).
    if len(pieces) > 1 and pieces[-1] == b"":
        pieces.pop()
    patterns = []
    for piece in pieces:
        negated = piece.startswith(b"!")
        body = piece[1:] if negated else piece
        regex = _compile_glob(body) if len(body) < _MAX_SUBPATTERN else None
        patterns.append(_Pattern(negated, regex))
    return tuple(patterns)


def _match_patterns(name: bytes, patterns: tuple[_Pattern, ...]) -> bool:
    positive = False
    for pattern in patterns:
        if pattern.regex is None:
            return False
        if pattern.regex.fullmatch(name):
            if pattern.negated:
                return False  # one negated match vetoes the whole line
            positive = True
    return positive


def _parse_salt(field: str) -> bytes | None:
    """The salt of a hashed host field, or None if OpenSSH would reject it."""
    if not field.startswith(_HASH_MAGIC):
        return None
    encoded, bar, _ = field[len(_HASH_MAGIC) :].partition("|")
    if not bar or not encoded or len(encoded) > _MAX_SALT_B64:
        return None
    salt = _b64decode(encoded)
    return salt if salt is not None and len(salt) == _SALT_LEN else None


@dataclass(frozen=True)
class _Hosts:
    """The host field of one line, ready to match lowercase names against."""

    field: str
    salt: bytes | None  # set for a hashed field
    patterns: tuple[_Pattern, ...]

    def matches(self, name: bytes) -> bool:
        if self.salt is not None:
            # OpenSSH rebuilds the whole field from the name and compares the
            # text, so a hashed field can hold one name and nothing else.
            return _hash_bytes(name, self.salt) == self.field
        return _match_patterns(name, self.patterns)


def _parse_hosts(field: str) -> _Hosts | str:
    # Any field starting with "|" is taken for a hash, as match_maybe_hashed() does.
    if not field.startswith("|"):
        return _Hosts(field, None, _parse_patterns(field))
    salt = _parse_salt(field)
    if salt is None:
        return "malformed hashed host name"
    return _Hosts(field, salt, ())


# -- lines ----------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One usable line of a known_hosts file."""

    marker: str  # "", MARKER_REVOKED or MARKER_CA
    key_type: str
    blob: bytes
    path: str
    line: int  # 1-based
    hashed: bool


def _split_word(text: str) -> tuple[str, str]:
    """The text up to the first blank, and what follows the blanks after it."""
    match = _WORD.match(text)
    assert match is not None  # the pattern matches any text
    return match.group(1), match.group(2)


def _take_marker(text: str) -> tuple[str, str] | str:
    """(marker, rest of line), or the reason the marker is bad."""
    if not text.startswith("@"):
        return "", text
    word, rest = _split_word(text)
    marker = _MARKERS.get(word)
    if marker is None:
        return f"unknown marker {word!r}"
    if rest.startswith("@"):
        return "more than one marker"
    return marker, rest


def _blob_type(blob: bytes) -> str | None:
    try:
        return WireReader(blob, "key").string("key type").decode(_ENCODING, _ERRORS)
    except ValueError:
        return None


def _take_key(text: str) -> tuple[str, bytes] | str:
    """(key type, blob) from "keytype base64 [comment]", or what is wrong."""
    if not text or text.startswith("#"):
        return "no key after the host names"
    key_type, rest = _split_word(text)
    encoded, _comment = _split_word(rest)
    if not encoded:
        return "no key after the key type"
    blob = _b64decode(encoded)
    if not blob:
        return "key is not valid base64"
    # sshkey_read() refuses a line whose key is of another type than it says.
    inner = _blob_type(blob)
    if inner != key_type:
        return f"key type {key_type!r} does not match the key ({inner!r})"
    return key_type, blob


def _parse_line(text: str, path: str, number: int) -> tuple[_Hosts, Entry] | str | None:
    """A usable line, the reason it is unusable, or None for a comment."""
    text = text.rstrip("\r").lstrip(_BLANKS)
    if not text or text.startswith("#"):
        return None
    marked = _take_marker(text)
    if isinstance(marked, str):
        return marked
    marker, rest = marked
    field, rest = _split_word(rest)
    key = _take_key(rest)
    if isinstance(key, str):
        return key
    hosts = _parse_hosts(field)
    if isinstance(hosts, str):
        return hosts
    key_type, blob = key
    hashed = hosts.salt is not None
    return hosts, Entry(marker, key_type, blob, path, number, hashed)


def _read(path: str) -> bytes | None:
    """The file's bytes, or None if there is no such file."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


class KnownHosts:
    """The usable lines of some known_hosts files, in the order read."""

    def __init__(self) -> None:
        self._lines: list[tuple[_Hosts, Entry]] = []
        self.skipped: list[tuple[str, int, str]] = []  # (path, line, reason)

    @classmethod
    def load(cls, paths: Sequence[str]) -> KnownHosts:
        """Read ``paths`` in order; a missing file is skipped, an unreadable
        one raises :class:`OSError`."""
        known = cls()
        for path in paths:
            data = _read(path)
            if data is not None:
                known._add(path, data.decode(_ENCODING, _ERRORS))
        return known

    def _add(self, path: str, text: str) -> None:
        # Split on "\n" only, as getline() does: str.splitlines() would also
        # break lines at form feeds and other characters OpenSSH keeps.
        for number, line in enumerate(text.split("\n"), start=1):
            parsed = _parse_line(line, path, number)
            if isinstance(parsed, str):
                self.skipped.append((path, number, parsed))
            elif parsed is not None:
                self._lines.append(parsed)

    @property
    def entries(self) -> list[Entry]:
        """Every usable line, whatever its hosts."""
        return [entry for _, entry in self._lines]

    def lookup(self, host: str, port: int) -> list[Entry]:
        """Every line whose host field matches ``host:port``, in file order."""
        name = _encode(known_name(host, port)).lower()
        return [entry for hosts, entry in self._lines if hosts.matches(name)]

    def keys_for(self, host: str, port: int) -> dict[str, list[bytes]]:
        """The known keys (no markers) of ``host:port``, by key type."""
        keys: dict[str, list[bytes]] = {}
        for entry in self.lookup(host, port):
            if not entry.marker:
                keys.setdefault(entry.key_type, []).append(entry.blob)
        return keys

    def revoked(self, host: str, port: int, blob: bytes) -> Entry | None:
        """The ``@revoked`` line for ``host:port`` that names this key, if any."""
        for entry in self.lookup(host, port):
            if entry.marker == MARKER_REVOKED and entry.blob == blob:
                return entry
        return None

    def authorities(self, host: str, port: int) -> list[Entry]:
        """The ``@cert-authority`` lines for ``host:port``."""
        return [e for e in self.lookup(host, port) if e.marker == MARKER_CA]


# -- writing --------------------------------------------------------------------


def _check_word(what: str, text: str) -> None:
    # A blank would shift the fields; a leading "#", "@" or "|" would make the
    # line a comment, a marker or a hash: the file would say something else.
    if not text or any(c.isspace() for c in text) or text[0] in "#@|":
        raise ValueError(f"{what} {text!r} cannot be written to a known_hosts file")


def entry_line(name: str, key_type: str, blob: bytes, *, hashed: bool) -> str:
    """One known_hosts line (no newline): ``name keytype base64``.

    A hashed line hashes the lowercased name: ssh lowercases the host name
    before looking it up, so a hash of "Example.COM" would never be found.
    """
    _check_word("host name", name)
    _check_word("key type", key_type)
    host = _hash_bytes(_encode(name).lower(), os.urandom(_SALT_LEN)) if hashed else name
    return f"{host} {key_type} {_b64(blob)}"


def _lacks_final_newline(fd: int) -> bool:
    if os.fstat(fd).st_size == 0:
        return False
    os.lseek(fd, -1, os.SEEK_END)
    return os.read(fd, 1) != b"\n"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _make_dirs(path: str) -> None:
    """Create ``path`` and each missing directory above it, mode 0700 as ssh
    makes ``~/.ssh`` (``os.makedirs`` gives all but the last the umask's)."""
    if not path or os.path.isdir(path):
        return
    _make_dirs(os.path.dirname(path))
    # Made meanwhile by another process; a file in the way fails the open.
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)


def append(path: str, name: str, key_type: str, blob: bytes, *, hashed: bool) -> None:
    """Add a line for ``name`` to the known_hosts file ``path``.

    Creates missing directories (each mode 0700) and file (mode 0600), as
    ssh does for ``~/.ssh/known_hosts``.  Raises :class:`OSError` on failure.
    """
    data = _encode(entry_line(name, key_type, blob, hashed=hashed) + "\n")
    _make_dirs(os.path.dirname(path))
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, 0o600)
    try:
        # Glued to a hand-edited last line without a newline, the new entry
        # would corrupt both.
        if _lacks_final_newline(fd):
            data = b"\n" + data
        _write_all(fd, data)  # O_APPEND: lands at the end whatever lseek did
    finally:
        os.close(fd)
