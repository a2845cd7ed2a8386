"""The package's shape: layers in folders, imports pointing down, paramiko's
internals behind one gate, and rooms small enough to read."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import nbtunnel
import paramiko

PACKAGE = Path(nbtunnel.__file__).parent
GATE = "_paramiko"  # the one place that may touch paramiko's private names

# Top to bottom: a module may import from its own folder or the layers below.
LAYERS = [
    {"ui", "__main__", "dask"},  # the faces: magic, CLI, demo, panel, Dask
    {"client"},  # the caller's handles, the rules, display, URLs
    # testing: the embedded demo SSH server, a peer built from the same parts.
    {"engine", "testing"},
    {"forward"},
    {"ssh"},
    {GATE},  # the gate: paramiko's internals; the relay and testing use it too
    {"settings"},
    {"grammar"},
    # platform: every difference between operating systems.
    {"status", "errors", "_version", "platform"},
]
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 250


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
            # "from . import x" imports the module x of that package
            found += [
                f"{name}.{a.name}" for a in node.names if name.startswith("nbtunnel")
            ]
    return found


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        name = ".".join(p for p in rel.parts if p != "__init__") or "__init__"
        out.append((name, path))
    return out


def _in_gate(name: str) -> bool:
    return name == GATE or name.startswith(GATE + ".")


def test_only_the_ssh_layer_imports_paramiko() -> None:
    users = {
        name.split(".")[0]
        for name, path in _modules()
        if any(i.split(".")[0] == "paramiko" for i in _imports(path))
    }
    # testing is the embedded server: paramiko's server side, a peer.
    assert users == {"ssh", GATE, "testing"}


def test_the_layers_are_folders_that_say_what_they_are() -> None:
    folders = {p.parent for p in PACKAGE.rglob("*.py")} - {PACKAGE}
    for folder in folders:
        init = folder / "__init__.py"
        assert init.exists(), folder
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 80, f"{init} needs a paragraph saying what it holds"
    tops = {_layer(name) for name, _ in _modules() if name != "__init__"}
    assert tops == set(range(len(LAYERS)))


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
                continue  # within one folder
            if _layer(target) < _layer(name):
                upward.append(f"{name} imports {target}")
    assert upward == []


def _private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("__")


@cache
def _paramiko_private_names() -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    """Every private name paramiko's own code defines (methods, attributes set
    on self, module-level names), and those of each of its classes with the
    classes it derives from."""
    names: set[str] = set()
    own: dict[str, set[str]] = {}
    bases: dict[str, list[str]] = {}
    for path in Path(paramiko.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases[node.name] = [ast.unparse(b).split(".")[-1] for b in node.bases]
                own[node.name] = {
                    n.name if isinstance(n, ast.FunctionDef) else n.attr
                    for n in ast.walk(node)
                    if isinstance(n, ast.FunctionDef)
                    or (isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store))
                }
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)

    def inherited(cls: str, seen: frozenset[str] = frozenset()) -> set[str]:
        found = set(own.get(cls, ()))
        for base in bases.get(cls, ()):
            if base not in seen:
                found |= inherited(base, seen | {cls})
        return {n for n in found if _private(n)}

    per_class = {cls: frozenset(inherited(cls)) for cls in own}
    return frozenset(n for n in names if _private(n)), per_class


def _own_private_names(tree: ast.Module) -> set[str]:
    """The private names a module defines for itself: its functions and
    classes, and the attributes its code sets on ``self``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
    return {n for n in names if _private(n)}


def _paramiko_classes(tree: ast.Module) -> set[str]:
    """Names in this module that stand for paramiko's classes (or the gate's)."""
    found = {"paramiko"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (
            (node.module or "").startswith("paramiko")
            or "_paramiko" in (node.module or "")
        ):
            found |= {a.asname or a.name for a in node.names}
    return found


def test_only_the_gate_touches_paramikos_private_names() -> None:
    private, per_class = _paramiko_private_names()
    touched = []
    for name, path in _modules():
        if _in_gate(name):
            continue
        tree = ast.parse(path.read_text())
        theirs = _paramiko_classes(tree)
        own = _own_private_names(tree)
        for cls in [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]:
            bases = [ast.unparse(b) for b in cls.bases]
            inherited = frozenset[str]().union(
                *(
                    per_class.get(b.split(".")[-1], frozenset())
                    for b in bases
                    if b.split(".")[0] in theirs
                )
            )
            # A subclass of paramiko's: its own private names must not be paramiko's.
            for node in ast.walk(cls):
                attr = node.name if isinstance(node, ast.FunctionDef) else None
                if isinstance(node, ast.Attribute):
                    attr = node.attr
                if attr in inherited:
                    touched.append(f"{name}.{cls.name}: {attr}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in private:
                # (os._exit, sys._getframe: the standard library's, not paramiko's)
                if node.attr not in own and not (
                    isinstance(node.value, ast.Name)
                    and (
                        node.value.id in ("self", "cls")
                        or node.value.id in sys.stdlib_module_names
                    )
                ):
                    touched.append(f"{name}: .{node.attr}")
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and (node.value in private or node.value.startswith("_Packetizer__"))
            ):
                touched.append(f"{name}: {node.value!r}")
    assert touched == [], touched


# What only nbtunnel/platform/ may look at: the system's name, and modules
# that exist on some systems only.
PLATFORM_NAMES = {("sys", "platform"), ("os", "name"), ("platform", "system")}
SYSTEM_MODULES = {
    "termios",
    "fcntl",
    "msvcrt",
    "winreg",
    "_winapi",
    "pwd",
    "grp",
    "resource",
}


# The signals every system has (C's own, which Windows has too): any other
# (SIGHUP, SIGPIPE...) is asked of nbtunnel.platform, which probes for it.
EVERYWHERE_SIGNALS = {"SIGABRT", "SIGFPE", "SIGILL", "SIGINT", "SIGSEGV", "SIGTERM"}


def _branches_on_the_platform(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in PLATFORM_NAMES:
                found.append(f"{node.value.id}.{node.attr}")
            elif (
                node.value.id == "signal"
                and node.attr.startswith("SIG")
                and not node.attr.startswith("SIG_")
                and node.attr not in EVERYWHERE_SIGNALS
            ):
                found.append(f"signal.{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr")
            and node.args
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id == "signal"
        ):
            found.append(f"{node.func.id}(signal, ...)")  # a probe for a signal
        elif isinstance(node, ast.ImportFrom) and not node.level:
            module = node.module or ""
            found += [
                f"from {module} import {a.name}"
                for a in node.names
                if (module, a.name) in PLATFORM_NAMES
                or module.split(".")[0] in SYSTEM_MODULES
            ]
        elif isinstance(node, ast.Import):
            found += [
                f"import {a.name}"
                for a in node.names
                if a.name.split(".")[0] in SYSTEM_MODULES | {"platform"}
            ]
    return found


def test_only_the_platform_layer_branches_on_the_platform() -> None:
    # Elsewhere the code probes nothing and names no system: what differs
    # is asked of nbtunnel.platform, which the emulation tests steer.
    found = [
        f"{name}: {what}"
        for name, path in _modules()
        if name.split(".")[0] != "platform"
        for what in _branches_on_the_platform(ast.parse(path.read_text()))
    ]
    assert found == []


def test_the_platform_check_sees_a_branch() -> None:
    code = (
        "import sys, termios\nfrom os import name\nif sys.platform == 'win32': pass\n"
    )
    assert _branches_on_the_platform(ast.parse(code)) == [
        "import termios",
        "from os import name",
        "sys.platform",
    ]


def test_the_platform_check_sees_a_signal_some_systems_lack() -> None:
    code = (
        "import signal\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "hup = getattr(signal, 'SIGHUP', None)\n"
        "signal.signal(signal.SIGPIPE, signal.SIG_DFL)\n"
    )
    assert _branches_on_the_platform(ast.parse(code)) == [
        "getattr(signal, ...)",
        "signal.SIGPIPE",
    ]


def test_rooms_are_small() -> None:
    big = []
    for name, path in _modules():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            big.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    big.append(f"{name}.{node.name}: {size} lines")
    assert big == []


def test_the_grammar_does_no_io() -> None:
    for name, path in _modules():
        if name.split(".")[0] != "grammar":
            continue
        imported = {i.split(".")[0] for i in _imports(path)}
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
print("nbtunnel.client.manager" in sys.modules)
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
        "nbtunnel.grammar.spec True True",
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
