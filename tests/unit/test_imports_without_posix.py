"""Every nbtunnel module imports where POSIX's modules and names are missing.

Windows has no ``termios``, ``fcntl``, ``pwd``, ``grp``, ``resource``,
``socket.AF_UNIX`` or ``socket.MSG_DONTWAIT``; macOS no ``TCP_QUICKACK``.
A module that reaches for one at import time breaks ``import nbtunnel``
(or the CLI, or the engine) for everyone there.  The interpreter that
imports them runs under tests/emulation's emulation of each OS.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

import pytest

from tests.emulation import TARGETS, emulated_env

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="the emulation rewrites Linux's socket options; real machines import for real",
)

# Imports every module of the package, __main__ modules aside (importing
# them runs the CLI or the engine; their imports are the CLI's and the
# engine's modules, imported here).  A missing third-party package that
# the plain interpreter has not either is an optional extra, not a finding.
_IMPORT_ALL = """
import importlib, importlib.util, json, pkgutil, sys, traceback
import nbtunnel

BLOCKED = {"termios", "fcntl", "pwd", "grp", "resource", "tty", "pty"}
# The Dask modules import distributed, whose psutil is Linux's build here
# and needs what the emulation removes (socket.AF_PACKET): a Mac's psutil
# is another module.  They use no socket option or POSIX module of their own.
THIRD_PARTY_PLATFORM = {"nbtunnel.dask", "nbtunnel.client.dask"}
names = sorted(
    m.name
    for m in pkgutil.walk_packages(nbtunnel.__path__, "nbtunnel.")
    if not m.name.endswith(".__main__") and m.name not in THIRD_PARTY_PLATFORM
)
failed, optional = {}, []
for name in names:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top and top not in BLOCKED and top != "nbtunnel" and top in OPTIONAL:
            optional.append(name)
        else:
            failed[name] = traceback.format_exc(limit=-3)
    except Exception:
        failed[name] = traceback.format_exc(limit=-3)
print(json.dumps({
    "emulated": sys._nbtunnel_emulated,
    "modules": names,
    "failed": failed,
    "optional": optional,
}))
"""


def _missing_here(names: list[str]) -> list[str]:
    import importlib.util

    return [n for n in names if importlib.util.find_spec(n) is None]


@pytest.mark.parametrize("target", TARGETS)
def test_every_module_imports(target: str) -> None:
    optional = _missing_here(["IPython", "ipykernel", "ipywidgets"])
    code = f"OPTIONAL = {optional!r}\n{_IMPORT_ALL}"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=emulated_env(target),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tempfile.gettempdir(),
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["emulated"] == target
    assert result["failed"] == {}, "\n".join(
        f"{name}:\n{tb}" for name, tb in result["failed"].items()
    )
    # The walk found the package's layers, not an empty or foreign tree.
    assert {"nbtunnel.ui.cli", "nbtunnel.engine.process", "nbtunnel.platform"} <= set(
        result["modules"]
    )


# The unit tests run on real macOS and Windows machines too
# (.github/workflows/ci.yml): pytest must be able to load every unit-test
# module there, and the rig's fixtures that tests/conftest.py registers
# (they run only on Linux, but they are loaded everywhere).
_IMPORT_TESTS = """
import importlib, json, pkgutil, sys, traceback
import tests.unit
names = ["tests.conftest", "tests.rig.fixtures"] + sorted(
    m.name for m in pkgutil.iter_modules(tests.unit.__path__, "tests.unit.")
)
failed = {}
for name in names:
    try:
        importlib.import_module(name)
    except BaseException:
        failed[name] = traceback.format_exc(limit=-3)
print(json.dumps({"emulated": sys._nbtunnel_emulated, "modules": names, "failed": failed}))
"""


@pytest.mark.parametrize("target", TARGETS)
def test_every_unit_test_module_loads(target: str) -> None:
    from tests.emulation import ROOT

    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_TESTS],
        env=emulated_env(target),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["emulated"] == target
    assert result["failed"] == {}, "\n".join(
        f"{name}:\n{tb}" for name, tb in result["failed"].items()
    )
    assert "tests.unit.test_listener" in result["modules"]
