"""Fixtures shared by the integration tests: managers in both engine modes, and
SSH connections made by hand to the rig's sshd."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from nbtunnel import Manager
from nbtunnel.grammar.spec import parse
from nbtunnel.settings.resolve import resolve
from nbtunnel.ssh.connection import Connection

# Makes a connection to the rig's sshd with extra ssh options, connected;
# each is closed when the test ends.
Connect = Callable[..., Connection]


@pytest.fixture(scope="module")
def process_manager() -> Iterator[Manager]:
    """One engine process for the module (it takes a few hundred ms to spawn)."""
    manager = Manager(engine="process")
    yield manager
    manager.close()


@pytest.fixture(params=["process", "inline"])
def manager(
    request: pytest.FixtureRequest, process_manager: Manager
) -> Iterator[Manager]:
    """The same test against the engine process and the inline engine."""
    if request.param == "process":
        yield process_manager
        process_manager.stop_all()
    else:
        inline = Manager(engine="inline")
        yield inline
        inline.close()


@pytest.fixture
def connect(sshd) -> Iterator[Connect]:
    """SSH connections to the rig's sshd, made by hand (no engine, no forwards)."""
    made: list[Connection] = []

    def open_(*options: str) -> Connection:
        connection = Connection(resolve(parse(sshd.line(*options))))
        connection.connect()
        made.append(connection)
        return connection

    yield open_
    for connection in made:
        connection.close()
