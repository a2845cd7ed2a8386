"""pytest fixtures of the rig (registered by tests/conftest.py via pytest_plugins).

- rig_mode (session): "netns" or "loopback" (see netns.detect_mode)
- rig (session): the Rig: namespace, sshd, targets
- sshd (session): the shared SshServer; do not stop it, use fresh_sshd for that
- targets (session): the Targets
- fresh_sshd (function): an independent SshServer reaching the same targets
- isolated (session): the rig's Netns; skips the test in loopback mode
- here (session): Targets on this machine's loopback, which -R forwards serve
- postgres (session): a PostgreSQL only the server reaches (tests/rig/postgres.py);
  fails, saying what to install, where it cannot run

Tests marked ``@pytest.mark.netns`` skip in loopback mode as well.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from .launcher import Targets, start_targets
from .netns import NETNS_SKIP_REASON, Mode, Netns, detect_mode, sweep_stale
from .postgres import Postgres, start_postgres
from .rig import Rig, raise_nofile_limit, start_rig
from .sshd import SshServer, start_sshd


def _skip_reason() -> str:
    return f"{NETNS_SKIP_REASON} (loopback mode: {detect_mode().reason})"


def pytest_configure(config: pytest.Config) -> None:
    # Also declared in pyproject.toml; repeated so the plugin works on its own.
    config.addinivalue_line("markers", f"netns: {NETNS_SKIP_REASON}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("netns") is not None and detect_mode().mode != "netns":
        pytest.skip(_skip_reason())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    # Failing forwards are mostly explained by sshd's side of the story.
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for name in ("fresh_sshd", "sshd"):
            server = funcargs.get(name)
            if isinstance(server, SshServer):
                report.sections.append((f"rig: {name} log tail", server.log_tail()))
    return report


@pytest.fixture(scope="session")
def rig_mode() -> Mode:
    return detect_mode().mode


@pytest.fixture(scope="session")
def rig(rig_mode: Mode) -> Iterator[Rig]:
    sweep_stale()  # what a killed earlier session could not clean up
    raise_nofile_limit()
    with start_rig(rig_mode) as r:
        yield r


@pytest.fixture(scope="session")
def sshd(rig: Rig) -> SshServer:
    return rig.sshd


@pytest.fixture(scope="session")
def targets(rig: Rig) -> Targets:
    return rig.targets


@pytest.fixture
def fresh_sshd(rig: Rig) -> Iterator[SshServer]:
    with start_sshd(rig.netns) as server:
        yield server


@pytest.fixture(scope="session")
def isolated(rig: Rig) -> Netns:
    if rig.netns is None:
        pytest.skip(_skip_reason())
    return rig.netns


@pytest.fixture(scope="session")
def here() -> Iterator[Targets]:
    with start_targets(None) as t:
        yield t


@pytest.fixture(scope="session")
def postgres(rig: Rig) -> Iterator[Postgres]:
    # A set-up requirement (README), like sshd: where it cannot run,
    # start_postgres fails saying what to install.
    with start_postgres(rig.netns) as server:
        yield server
