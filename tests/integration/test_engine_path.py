"""The engine imports what its caller would: the caller's ``sys.path`` order,
never the working directory first (issue 19, item 6); a module planted
there never runs in the engine (issue 20, item 5)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.rig import clients, procs

pytestmark = pytest.mark.integration

# The caller: starts an engine process (which imports paramiko and logging
# at once) and prints its pid once it said hello.
CALLER = """
from nbtunnel.engine.client import ProcessClient
client = ProcessClient(lambda message: None)
print(client.pid, flush=True)
client.close()
"""

# A module the engine imports, which must never be imported from the
# working directory.
TRAP = "raise SystemExit('imported {name} from the working directory')\n"

# A paramiko found first on the user's PYTHONPATH: it notes who imported
# it, then hands over to the real one.
SHIM = """
import importlib.machinery, importlib.util, os, sys
with open(os.environ["NBTUNNEL_TEST_SHIM"], "a") as f:
    f.write(f"{os.getpid()}\\n")
here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
spec = importlib.machinery.PathFinder.find_spec("paramiko", rest)
real = importlib.util.module_from_spec(spec)
sys.modules["paramiko"] = real  # takes this module's place
spec.loader.exec_module(real)
"""


def test_the_engine_skips_the_working_directory_and_keeps_pythonpath_first(
    tmp_path: Path,
) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    for name in ("logging", "paramiko", "cryptography", "json"):
        (cwd / f"{name}.py").write_text(TRAP.format(name=name))
    user = tmp_path / "user"
    (user / "paramiko").mkdir(parents=True)
    (user / "paramiko" / "__init__.py").write_text(textwrap.dedent(SHIM))
    shimmed = tmp_path / "shimmed"
    ran = subprocess.run(
        # -P: the caller itself does not import from its working directory
        # (a kernel whose cwd holds such files would have failed already).
        [sys.executable, "-P", "-c", CALLER],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={
            **os.environ,
            "PYTHONPATH": str(user),
            "NBTUNNEL_TEST_SHIM": str(shimmed),
        },
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    engine = ran.stdout.split()[0]
    assert "from the working directory" not in ran.stderr
    # The engine took paramiko from the user's PYTHONPATH, before site-packages.
    assert engine in shimmed.read_text().split()


def test_the_engine_path_is_the_callers_less_the_working_directory(
    tmp_path: Path,
) -> None:
    code = textwrap.dedent(
        """
        import os, sys
        sys.path[:0] = ["", os.getcwd(), "/first"]
        from nbtunnel.engine.client import engine_path
        print(repr(engine_path()))
        print(repr(sys.path))
        """
    )
    ran = subprocess.run(
        [sys.executable, "-P", "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    engine, caller = (eval(line) for line in ran.stdout.splitlines())
    assert engine[0] == "/first"
    assert "" not in engine and str(tmp_path) not in engine
    assert engine == [p for p in caller if p not in ("", str(tmp_path))]


# Planted in the caller's working directory under the name of a module the
# engine imports (issue 20, item 5): it notes which process imported it,
# then hands over to the real module, so that every process still works.
PLANTED = """
import importlib.machinery, importlib.util, os, sys
with open(os.environ["NBTUNNEL_TEST_PLANTED"], "a") as f:
    f.write(f"{os.getpid()} {__name__}\\n")
here = os.path.dirname(os.path.abspath(__file__))
rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
spec = importlib.machinery.PathFinder.find_spec(__name__, rest)
real = importlib.util.module_from_spec(spec)
sys.modules[__name__] = real
spec.loader.exec_module(real)
"""

# A caller in the planted directory: a tunnel through the engine process,
# a round trip through it, and the engine's pid.
PLANTED_CALLER = """
import json, socket, sys
import nbtunnel
manager = nbtunnel.Manager(engine="process")
t = manager.open(sys.argv[1])
with socket.create_connection(("127.0.0.1", t.forwards[0].listen_port), 10) as s:
    s.sendall(b"planted")
    s.shutdown(socket.SHUT_WR)
    echoed = b""
    while chunk := s.recv(100):
        echoed += chunk
print(json.dumps({"engine": manager.engine_pid, "echoed": echoed.decode()}))
manager.close()
"""


def _plant(cwd: Path) -> None:
    cwd.mkdir()
    for name in ("selectors", "socket"):
        (cwd / f"{name}.py").write_text(textwrap.dedent(PLANTED))


def _importers(marker: Path) -> set[int]:
    if not marker.exists():
        return set()
    return {int(line.split()[0]) for line in marker.read_text().splitlines()}


@pytest.mark.parametrize("how", ["-c", "script"])
def test_a_module_planted_in_the_callers_directory_never_runs_in_the_engine(
    tmp_path: Path, sshd, targets, how: str
) -> None:
    cwd = tmp_path / "work"
    _plant(cwd)
    marker = tmp_path / "imported"
    if how == "script":
        (cwd / "caller.py").write_text(textwrap.dedent(PLANTED_CALLER))
        command = [sys.executable, "caller.py"]
    else:
        command = [sys.executable, "-c", textwrap.dedent(PLANTED_CALLER)]
    line = sshd.line("-L", f"0:{targets.host}:{targets.echo}")
    ran = subprocess.run(
        [*command, line],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "NBTUNNEL_TEST_PLANTED": str(marker)},
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    info = json.loads(ran.stdout.splitlines()[-1])
    assert info["echoed"] == "planted"
    importers = _importers(marker)
    # The caller itself imported them (Python puts its directory first):
    # the trap works, and still the engine never ran it.
    assert importers, "the planted modules were never imported at all"
    assert info["engine"] not in importers, marker.read_text()


def test_the_cli_run_from_a_planted_directory_imports_nothing_from_it(
    tmp_path: Path, sshd, targets
) -> None:
    # The console script: its directory, not the working one, is on sys.path;
    # its engine runs inline, in that same process.
    cli = Path(sys.executable).with_name("nbtunnel")
    assert cli.exists(), f"{cli}: pip install -e . makes it"
    cwd = tmp_path / "work"
    _plant(cwd)
    marker = tmp_path / "imported"
    forward = ["-L", f"0:{targets.host}:{targets.echo}"]
    proc = subprocess.Popen(
        [str(cli), *sshd.args(), *forward, sshd.destination],
        preexec_fn=procs.interruptible,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, "NBTUNNEL_TEST_PLANTED": str(marker)},
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"this machine 127\.0\.0\.1:(\d+)", first)
        assert match, first + (proc.stderr.read() if proc.stderr else "")
        port = int(match.group(1))
        assert clients.echo_roundtrip("127.0.0.1", port, b"cli", 10) == b"cli"
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert _importers(marker) == set(), marker.read_text()
