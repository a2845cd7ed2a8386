"""What ssh would ask a person (an unknown host key, a key's passphrase), asked
through ``prompt=`` in both engines, against the rig's real sshd."""

from __future__ import annotations

import base64
import hashlib
import logging
import shlex
from pathlib import Path

import pytest
from nbtunnel import AuthenticationError, HostKeyError, Manager

from tests.rig import clients
from tests.rig.sshd import locked_copy

pytestmark = pytest.mark.integration

PASSPHRASE = "correct horse 9"


def _fingerprint(pub: Path) -> str:
    blob = base64.b64decode(pub.read_text().split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip(
        "="
    )


def _line(sshd, targets, known_hosts: Path, key: Path, *extra: str) -> str:
    return shlex.join(
        [
            "-p",
            str(sshd.port),
            "-i",
            str(key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            *extra,
            "-L",
            f"0:{targets.host}:{targets.echo}",
            sshd.destination,
        ]
    )


Person = clients.Person


@pytest.mark.parametrize("answer", ["yes", "fingerprint"])
def test_an_unknown_host_is_asked_about_and_recorded(
    manager: Manager, sshd, targets, tmp_path: Path, answer: str
) -> None:
    known = tmp_path / "known_hosts"
    fp = _fingerprint(sshd.host_key_pub)
    person = Person(fp if answer == "fingerprint" else "yes")
    with manager.open(_line(sshd, targets, known, sshd.client_key), prompt=person) as t:
        port = t.forwards[0].listen_port
        assert clients.echo_roundtrip("127.0.0.1", port, b"trusted", 10) == b"trusted"
    ((question, secret),) = person.asked
    assert not secret
    assert fp in question and "(yes/no/[fingerprint])" in question
    assert f"[{sshd.host}]:{sshd.port}" in question
    assert known.read_text().split()[1:] == sshd.host_key_pub.read_text().split()[:2]
    # Known now: no question the second time.
    again = Person()
    with manager.open(_line(sshd, targets, known, sshd.client_key), prompt=again):
        pass
    assert again.asked == []


def test_no_refuses_and_records_nothing(
    manager: Manager, sshd, targets, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    person = Person("maybe", "no")
    with pytest.raises(HostKeyError, match="you answered no"):
        manager.open(_line(sshd, targets, known, sshd.client_key), prompt=person)
    assert [q for q, _ in person.asked][
        1
    ] == "Please type 'yes', 'no' or the fingerprint: "
    assert not known.exists()


def test_without_anyone_to_ask_an_unknown_host_is_refused(
    manager: Manager, sshd, targets, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    with pytest.raises(HostKeyError, match="Nobody could be asked"):
        manager.open(_line(sshd, targets, known, sshd.client_key))
    person = Person(None)  # asked, and nobody answered
    with pytest.raises(HostKeyError, match="nobody answered"):
        manager.open(_line(sshd, targets, known, sshd.client_key), prompt=person)
    assert not known.exists()


@pytest.fixture
def locked_key(sshd, tmp_path: Path) -> Path:
    """The rig's client key, encrypted with PASSPHRASE."""
    return locked_copy(sshd.client_key, tmp_path / "locked_ed25519", PASSPHRASE)


def test_an_encrypted_key_asks_its_passphrase_and_logs_none_of_it(
    manager: Manager, sshd, targets, locked_key: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    person = Person("wrong one", PASSPHRASE)
    line = _line(sshd, targets, sshd.known_hosts, locked_key)
    with manager.open(line, prompt=person) as t:
        port = t.forwards[0].listen_port
        assert clients.echo_roundtrip("127.0.0.1", port, b"unlocked", 10) == b"unlocked"
    assert person.asked == [(f"Enter passphrase for key '{locked_key}': ", True)] * 2
    assert all(PASSPHRASE not in r.getMessage() for r in caplog.records)
    assert all("wrong one" not in r.getMessage() for r in caplog.records)


def test_three_wrong_passphrases_fail_the_login(
    manager: Manager, sshd, targets, locked_key: Path
) -> None:
    person = Person("a", "b", "c", PASSPHRASE)
    line = _line(sshd, targets, sshd.known_hosts, locked_key)
    with pytest.raises(AuthenticationError, match="wrong passphrase, three times"):
        manager.open(line, prompt=person)
    assert len(person.asked) == 3
    with pytest.raises(
        AuthenticationError, match="nobody could be asked its passphrase"
    ):
        manager.open(line)


def test_a_locked_key_that_is_not_needed_is_not_asked_for(
    manager: Manager, sshd, targets, locked_key: Path
) -> None:
    # ssh's order: the unlocked file logs in before the locked one is reached.
    person = Person(PASSPHRASE)
    line = _line(
        sshd, targets, sshd.known_hosts, locked_key, "-i", str(sshd.client_key)
    )
    with manager.open(line, prompt=person) as t:
        assert t.state == "up"
    assert person.asked == []
