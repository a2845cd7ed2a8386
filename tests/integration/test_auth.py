"""Password, keyboard-interactive (PAM) and multi-step logins against real sshds.

Each sshd here is the rig's, with PAM on and the methods a test needs; the
login is a real local account with a password (tests/rig/users.py).  The
questions go through ``prompt=``, as the magic and the CLI supply it.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from nbtunnel import AuthenticationError, Manager

from tests.rig import clients, users
from tests.rig.sshd import SshServer, start_sshd

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not users.can_create(), reason=users.SKIP_REASON),
]

PAM = {"UsePAM": "yes"}
PASSWORD = {**PAM, "PasswordAuthentication": "yes"}
KBD = {**PAM, "KbdInteractiveAuthentication": "yes"}


Person = clients.Person


@pytest.fixture(scope="module")
def login() -> Iterator[users.LoginUser]:
    with users.login_user() as user:
        yield user


@pytest.fixture
def server(request: pytest.FixtureRequest, rig) -> Iterator[SshServer]:
    """An sshd with the options of the test's ``sshd_options`` marker."""
    marker = request.node.get_closest_marker("sshd_options")
    with start_sshd(rig.netns, options=marker.args[0] if marker else {}) as s:
        # sshd reads authorized_keys as the login user, not as root.
        s.workdir.chmod(0o711)
        (s.workdir / "authorized_keys").chmod(0o644)
        yield s


def _line(server: SshServer, login: users.LoginUser, targets, *extra: str) -> str:
    return shlex.join(
        [
            "-p",
            str(server.port),
            "-o",
            f"UserKnownHostsFile={server.known_hosts}",
            "-o",
            "IdentitiesOnly=yes",
            *extra,
            "-L",
            f"0:{targets.host}:{targets.echo}",
            f"{login.name}@{server.host}",
        ]
    )


@pytest.mark.sshd_options(PASSWORD)
def test_a_password_is_asked_for_and_logs_in(
    manager: Manager,
    server: SshServer,
    login,
    targets,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    person = Person(login.password)
    with manager.open(_line(server, login, targets), prompt=person) as t:
        assert clients.echoes(t, b"logged in")
    assert person.asked == [(f"{login.name}@{server.host}'s password: ", True)]
    assert any(
        f"Accepted password for {login.name}" in a
        for a in clients.accepted_logins(server)
    )
    assert all(login.password not in r.getMessage() for r in caplog.records)


@pytest.mark.sshd_options(PASSWORD)
def test_a_wrong_password_is_asked_again_three_times(
    manager: Manager, server: SshServer, login, targets
) -> None:
    person = Person("wrong", "wronger", "wrongest", login.password)
    with pytest.raises(AuthenticationError, match="wrong password, three times"):
        manager.open(_line(server, login, targets), prompt=person)
    assert len(person.asked) == 3
    question = f"{login.name}@{server.host}'s password: "
    again = f"Permission denied, please try again.\n{question}"
    assert person.asked == [(question, True), (again, True), (again, True)]
    assert clients.accepted_logins(server) == []
    assert clients.sessions_gone(server)


@pytest.mark.sshd_options({**PASSWORD, "PubkeyAuthentication": "no"})
def test_a_password_without_anyone_to_ask_fails_clearly(
    manager: Manager, server: SshServer, login, targets
) -> None:
    with pytest.raises(AuthenticationError) as info:
        manager.open(_line(server, login, targets))
    text = str(info.value)
    assert text.startswith(f"cannot log in to {login.name}@{server.host}")
    assert "asks for a password, but nobody can answer questions here" in text
    assert clients.sessions_gone(server)


@pytest.mark.sshd_options(PASSWORD)
def test_batch_mode_asks_nothing(
    manager: Manager, server: SshServer, login, targets
) -> None:
    person = Person(login.password)
    with pytest.raises(AuthenticationError, match="BatchMode is on"):
        manager.open(
            _line(server, login, targets, "-o", "BatchMode=yes"), prompt=person
        )
    assert person.asked == []


@pytest.mark.sshd_options(PASSWORD)
def test_password_authentication_no_leaves_the_password_unasked(
    manager: Manager, server: SshServer, login, targets
) -> None:
    person = Person(login.password)
    line = _line(server, login, targets, "-o", "PasswordAuthentication=no")
    with pytest.raises(AuthenticationError, match="allows password, turned off here"):
        manager.open(line, prompt=person)
    assert person.asked == []


@pytest.mark.sshd_options(KBD)
def test_keyboard_interactive_shows_the_servers_question(
    manager: Manager, server: SshServer, login, targets
) -> None:
    person = Person(login.password)
    with manager.open(_line(server, login, targets), prompt=person) as t:
        assert clients.echoes(t, b"logged in")
    # PAM's own words, secret because the server said not to echo them.
    assert person.asked == [("Password: ", True)]
    assert any(
        "Accepted keyboard-interactive/pam" in a
        for a in clients.accepted_logins(server)
    )


@pytest.mark.sshd_options(KBD)
def test_a_declined_question_ends_keyboard_interactive(
    manager: Manager, server: SshServer, login, targets
) -> None:
    person = Person(None)
    with pytest.raises(AuthenticationError, match="question was declined"):
        manager.open(_line(server, login, targets), prompt=person)
    assert len(person.asked) == 1
    assert clients.sessions_gone(server)


@pytest.mark.sshd_options(
    {**KBD, "AuthenticationMethods": "publickey,keyboard-interactive"}
)
def test_publickey_then_keyboard_interactive(
    manager: Manager, server: SshServer, login, targets
) -> None:
    key = ["-i", str(server.client_key)]
    person = Person(login.password)
    with manager.open(_line(server, login, targets, *key), prompt=person) as t:
        assert clients.echoes(t, b"logged in")
    assert person.asked == [("Password: ", True)]
    log = server.log_tail(400)
    assert f"Partial publickey for {login.name}" in log
    assert any(
        "Accepted keyboard-interactive/pam" in a
        for a in clients.accepted_logins(server)
    )


@pytest.mark.sshd_options(
    {**KBD, "AuthenticationMethods": "publickey,keyboard-interactive"}
)
def test_a_second_step_nobody_can_answer_is_named(
    manager: Manager, server: SshServer, login, targets
) -> None:
    key = ["-i", str(server.client_key)]
    with pytest.raises(AuthenticationError) as info:
        manager.open(_line(server, login, targets, *key))
    text = str(info.value)
    assert "after publickey succeeded" in text
    assert "keyboard-interactive, but nobody can answer" in text
    assert clients.sessions_gone(server)


@pytest.mark.sshd_options(
    {**KBD, "AuthenticationMethods": "keyboard-interactive,publickey"}
)
def test_keyboard_interactive_then_a_key(
    manager: Manager, server: SshServer, login, targets, tmp_path: Path
) -> None:
    person = Person(login.password)
    key = ["-i", str(server.client_key)]
    with manager.open(_line(server, login, targets, *key), prompt=person) as t:
        assert clients.echoes(t, b"logged in")
    assert f"Accepted publickey for {login.name}" in server.log_tail(400)
