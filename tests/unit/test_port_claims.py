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
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    monkeypatch.setattr(port_claims, "BASES", (str(run), str(tmp_path / "none")))
    return run


def test_the_same_owner_joins_and_another_is_refused_naming_the_holder() -> None:
    first = port_claims.claim(40001, "nbtunnel-db-aaaa")
    second = port_claims.claim(40001, "nbtunnel-db-aaaa")
    assert first is not None and second is not None
    with pytest.raises(port_claims.PortTaken) as taken:
        port_claims.claim(40001, "nbtunnel-staging-bbbb")
    assert taken.value.owner == "nbtunnel-db-aaaa"
    # A prefix of the holder's name is another owner too.
    with pytest.raises(port_claims.PortTaken):
        port_claims.claim(40001, "nbtunnel-db-aaa")
    other = port_claims.claim(40002, "nbtunnel-staging-bbbb")  # another port
    assert other is not None
    first.release()
    with pytest.raises(port_claims.PortTaken):  # one holder is left
        port_claims.claim(40001, "nbtunnel-staging-bbbb")
    second.release()
    other.release()
    # Nobody holds it now: a new owner takes it.
    again = port_claims.claim(40001, "nbtunnel-staging-bbbb")
    assert again is not None
    again.release()
    again.release()  # twice is harmless


def test_a_dead_holders_claim_is_not_in_the_way(runtime_dir: Path) -> None:
    code = textwrap.dedent(
        f"""
        import os
        from nbtunnel.platform import port_claims
        port_claims.BASES = ({str(runtime_dir)!r}, "/nonexistent")
        held = port_claims.claim(40003, "nbtunnel-gone-cccc")
        assert held is not None
        os._exit(0)  # no release: the system lets go of a dead process's lock
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    held = port_claims.claim(40003, "nbtunnel-new-dddd")
    assert held is not None
    held.release()


def test_a_directory_someone_else_could_write_into_is_not_used(
    runtime_dir: Path,
) -> None:
    loose = runtime_dir / f"nbtunnel-{os.getuid()}-ports"
    loose.mkdir()
    loose.chmod(0o777)
    assert port_claims.directory() is None
    assert port_claims.claim(40004, "x") is None


def test_without_a_runtime_directory_the_last_base_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    last = tmp_path / "tmp"
    last.mkdir()
    monkeypatch.setattr(port_claims, "BASES", ("/nonexistent/run", str(last)))
    assert port_claims.directory() == str(last / f"nbtunnel-{os.getuid()}-ports")
    monkeypatch.setattr(port_claims, "BASES", ("/nonexistent/run", "/nonexistent"))
    assert port_claims.claim(40006, "x") is None  # cannot be made: not shared


def test_without_file_locks_nothing_is_claimed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(port_claims, "_fcntl", lambda: None)  # as on Windows
    assert port_claims.claim(40005, "x") is None
