"""The package's shape: imports point down, paramiko stays behind the connection."""

from __future__ import annotations

import ast
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


def test_typed() -> None:
    assert (PACKAGE / "py.typed").exists()
