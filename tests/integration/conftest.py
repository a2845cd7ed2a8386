"""Fixtures shared by the integration tests: managers in both engine modes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from nbtunnel import Manager


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
