"""The engine imports what its caller would: the caller's ``sys.path`` order,
never the working directory first (issue 19, item 6)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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
