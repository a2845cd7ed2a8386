"""Claims on shared ports (nbtunnel.platform.port_claims): processes of one
user share a port only when they serve the same thing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from nbtunnel.platform import port_claims

pytestmark = pytest.mark.skipif(
    port_claims._fcntl() is None, reason="no fcntl: nothing is claimed here"
)


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    return tmp_path


def test_the_same_owner_joins_and_another_is_refused_naming_the_holder() -> None:
    first = port_claims.claim("127.0.0.1", 40001, "nbtunnel-db-aaaa")
    second = port_claims.claim("127.0.0.1", 40001, "nbtunnel-db-aaaa")
    assert first is not None and second is not None
    with pytest.raises(port_claims.PortTaken) as taken:
        port_claims.claim("127.0.0.1", 40001, "nbtunnel-staging-bbbb")
    assert taken.value.owner == "nbtunnel-db-aaaa"
    # Another port, or another address, is another claim.
    other = port_claims.claim("127.0.0.1", 40002, "nbtunnel-staging-bbbb")
    assert other is not None
    for held in (first, second, other):
        held.release()
    # Nobody holds it now: a new owner takes it.
    again = port_claims.claim("127.0.0.1", 40001, "nbtunnel-staging-bbbb")
    assert again is not None
    again.release()
    again.release()  # twice is harmless


def test_a_dead_holders_claim_is_not_in_the_way(runtime_dir: Path) -> None:
    code = textwrap.dedent(
        """
        import os
        from nbtunnel.platform import port_claims
        held = port_claims.claim("127.0.0.1", 40003, "nbtunnel-gone-cccc")
        assert held is not None
        os._exit(0)  # no release: the system lets go of a dead process's lock
        """
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir)},
    )
    held = port_claims.claim("127.0.0.1", 40003, "nbtunnel-new-dddd")
    assert held is not None
    held.release()


def test_a_directory_someone_else_could_reach_is_not_used(runtime_dir: Path) -> None:
    loose = runtime_dir / f"nbtunnel-{os.getuid()}-ports"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    assert port_claims.directory() is None
    assert port_claims.claim("127.0.0.1", 40004, "x") is None


def test_without_file_locks_nothing_is_claimed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(port_claims, "_fcntl", lambda: None)  # as on Windows
    assert port_claims.claim("127.0.0.1", 40005, "x") is None
