"""Shared pytest configuration: registers the integration rig's fixtures."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.rig.fixtures"]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 that someone else already listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]
