"""The package's shape: imports point down, paramiko stays behind the connection."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import nbtunnel

PACKAGE = Path(nbtunnel.__file__).parent

# Top to bottom; a module may import only from its own layer or below.
LAYERS = [
    {"cli", "__main__", "magic", "widget", "panel_view", "demo"},
    {"manager"},
    {"engine"},
    # testing: the embedded demo SSH server, a peer beside the client side.
    {"connection", "forward", "testing"},
    {"auth", "sshext", "proxy", "splice"},
    {"fastpath", "rekey"},
    {"config", "display", "urls"},
    {"sshconfig", "knownhosts"},
    {"spec", "_words"},
    {"status", "errors", "_version"},
]


def _layer(module: str) -> int:
    top = module.split(".")[0]
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"nbtunnel.{module} is in no layer; add it to LAYERS")


def _imports(path: Path) -> list[str]:
    """Absolute module names this file imports (relative ones resolved)."""
    rel = path.relative_to(PACKAGE).with_suffix("")
    package = list(rel.parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(
                    ["nbtunnel", *base, *([node.module] if node.module else [])]
                )
            else:
                name = node.module or ""
            found.append(name)
    return found


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        name = ".".join(p for p in rel.parts if p != "__init__") or "__init__"
        out.append((name, path))
    return out


def test_only_the_connection_layer_imports_paramiko() -> None:
    users = [
        name.split(".")[0]
        for name, path in _modules()
        if any(i.split(".")[0] == "paramiko" for i in _imports(path))
    ]
    # sshext adds the OpenSSH messages paramiko lacks; auth logs in; the
    # connection uses both; testing is the embedded server's side; fastpath
    # and splice (the relay's shorter way through paramiko) and rekey (a fix
    # to its key exchange) reach into paramiko's internals.
    assert set(users) <= {
        "auth",
        "connection",
        "sshext",
        "testing",
        "fastpath",
        "splice",
        "rekey",
    }
    assert {"auth", "connection", "sshext"} <= set(users)


def test_imports_point_down() -> None:
    upward = []
    for name, path in _modules():
        if name == "__init__":
            continue  # the package's face re-exports from every layer
        for imported in _imports(path):
            if not imported.startswith("nbtunnel."):
                continue
            target = imported.removeprefix("nbtunnel.")
            if target.split(".")[0] == name.split(".")[0]:
                continue  # within one subpackage
            if _layer(target) < _layer(name):
                upward.append(f"{name} imports {target}")
    assert upward == []


def test_the_grammar_does_no_io() -> None:
    for name in ("spec", "_words"):
        imported = {i.split(".")[0] for i in _imports(PACKAGE / f"{name}.py")}
        assert not imported & {"socket", "os", "subprocess", "paramiko", "pathlib"}


def test_public_names() -> None:
    assert nbtunnel.__all__ == sorted(nbtunnel.__all__)
    for name in nbtunnel.__all__:
        assert hasattr(nbtunnel, name), name
    assert issubclass(nbtunnel.SpecError, ValueError)
    assert issubclass(nbtunnel.ConnectError, ConnectionError)
    for cls in (
        nbtunnel.SpecError,
        nbtunnel.ConnectError,
        nbtunnel.AuthenticationError,
        nbtunnel.HostKeyError,
        nbtunnel.ForwardError,
        nbtunnel.EngineError,
    ):
        assert issubclass(cls, nbtunnel.TunnelError)


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args, "-c", code] if code else [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=PACKAGE.parent,
        env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)},
        timeout=60,
        input="",
    )


def test_the_package_imports_its_names_when_first_used() -> None:
    # The engine process imports the package too: the caller's side (the
    # manager and what it imports) must not come with it.
    code = """
import sys, nbtunnel
print(sorted(m for m in sys.modules if m.startswith(("nbtunnel.", "paramiko"))))
nbtunnel.Manager
print("nbtunnel.manager" in sys.modules)
try:
    nbtunnel.Manger
except AttributeError as exc:
    print(exc)
from nbtunnel import *
print(parse.__module__, "panel" in dir(nbtunnel), "Tunnel" in dir(nbtunnel))
"""
    ran = _python(code)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [
        "['nbtunnel._version']",
        "True",
        "module 'nbtunnel' has no attribute 'Manger'",
        "nbtunnel.spec True True",
    ]


def test_the_engine_process_does_not_import_invoke() -> None:
    # paramiko imports invoke for a feature nbtunnel does not use, and it
    # was a third of the engine's start.  stdin at EOF: the engine says
    # hello and exits.
    ran = _python("", "-X", "importtime", "-m", "nbtunnel.engine")
    assert ran.returncode == 0, ran.stderr
    assert '"hello"' in ran.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in ran.stderr.splitlines()}
    assert "paramiko.transport" in imported
    # ("invoke" itself is listed: the import that fails at once.)
    assert [m for m in imported if m.startswith("invoke.")] == []


def test_typed() -> None:
    assert (PACKAGE / "py.typed").exists()
