"""The panel and the manager operations behind its buttons, in a real kernel.

Forwards go through the rig's real sshd to targets only the server reaches;
the test process connects to the ports the kernel's forwards open.
"""

from __future__ import annotations

import socket

import pytest

from tests.rig import clients

from .conftest import Kernel

pytestmark = [pytest.mark.integration, pytest.mark.notebook]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _ok(kernel: Kernel, code: str) -> None:
    ran = kernel.run(code)
    assert ran.ok, ran.text


def _echoes(port: int) -> bool:
    return clients.echo_roundtrip("127.0.0.1", port, b"panel", 10) == b"panel"


def test_the_panel_is_a_view_and_restart_and_remove_are_the_managers(
    kernel: Kernel, sshd, targets, here
) -> None:
    _ok(kernel, "%load_ext nbtunnel")
    line = sshd.line(
        "-L",
        f"0:{targets.host}:{targets.echo}",
        "-R",
        f"127.0.0.1:0:127.0.0.1:{here.echo}",
    )
    _ok(kernel, f"t = %tunnel {line}")
    port, remote = kernel.value("[f.listen_port for f in t.forwards]")

    shown = kernel.run("p = %tunnel panel\np")
    assert shown.ok, shown.text
    assert any(WIDGET_VIEW in m["content"]["data"] for m in shown.outputs)
    assert kernel.value("len(p.children[1].children)") == 2  # two rows
    usage = kernel.run("%tunnel help")
    assert "%tunnel panel" in usage.text
    extra = kernel.run("%tunnel panel wide")
    assert extra.reply["ename"] == "UsageError"
    assert "usage: %tunnel panel" in extra.reply["evalue"]

    # Stopped, then started again: the same port, one row, one table line.
    _ok(kernel, "f = t.forwards[0]; f.stop()")
    assert clients.wait_until(lambda: clients.port_is_closed("127.0.0.1", port), 5)
    _ok(kernel, "g = f.restart()")
    assert kernel.value("(g.listen_port, f.replaced_by is g, t.forwards[0] is g)") == (
        port,
        True,
        True,
    )
    assert kernel.value("g.restart() is g and f.restart() is g")  # it runs
    assert kernel.value("(f.state, g.state)") == ("stopped", "up")
    assert _echoes(port)
    table = kernel.run("%tunnel").text
    assert table.count(f"127.0.0.1:{port} ") == 1 and "stopped" not in table

    # The -R's server port is asked for again, too.
    _ok(kernel, "r = t.forwards[1]; r.stop(); r2 = r.restart()")
    assert kernel.value("r2.listen_port") == remote
    assert clients.on_server(sshd, "echo", "127.0.0.1", remote, 100)["ok"]

    # Its port taken meanwhile: any free one, still the same forward.
    _ok(kernel, "g.stop()")
    assert clients.wait_until(lambda: clients.port_is_closed("127.0.0.1", port), 5)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        _ok(kernel, "h = g.restart()")
        other = kernel.value("h.listen_port")
        assert other not in (port, 0)
        assert _echoes(other)

    # A fixed port taken meanwhile: said, as ssh would; no other port.
    fixed = clients.free_port()
    _ok(kernel, f"%tunnel {sshd.line('-L', f'{fixed}:{targets.host}:{targets.echo}')}")
    _ok(kernel, "k = t.forwards[-1]; k.stop()")
    assert clients.wait_until(lambda: clients.port_is_closed("127.0.0.1", fixed), 5)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", fixed))
        squatter.listen()
        taken = kernel.run("k.restart()")
        assert taken.reply["ename"] == "ForwardError"
        assert "already in use" in taken.reply["evalue"]
    _ok(kernel, "k2 = k.restart()")
    assert kernel.value("k2.listen_port") == fixed and _echoes(fixed)
    _ok(kernel, "k2.remove()")

    # The panel shows what the API did, with no click of its own.
    _ok(kernel, "p.refresh()")
    what = kernel.value(
        "[r.children[0].children[2].value for r in p.children[1].children]"
    )
    assert len(what) == 2 and f"127.0.0.1:{other}" in what[0]

    # Removed: gone from t.forwards, the table and the panel; not restartable.
    _ok(kernel, "h.remove(); h.remove(); p.refresh()")
    assert clients.wait_until(lambda: clients.port_is_closed("127.0.0.1", other), 5)
    assert kernel.value("([f is r2 for f in t.forwards], h.removed)") == ([True], True)
    assert f"127.0.0.1:{other}" not in kernel.run("%tunnel").text
    assert kernel.value("len(p.children[1].children)") == 1
    refused = kernel.run("h.restart()")
    assert not refused.ok and refused.reply["ename"] == "ForwardError"
    assert "was removed" in refused.reply["evalue"]

    # The last one removed: the tunnel stops (its connection carried nothing).
    _ok(kernel, "r2.remove()")
    assert kernel.value("(len(__import__('nbtunnel').tunnels()), t.state)") == (
        0,
        "stopped",
    )
    _ok(kernel, f"t2 = %tunnel {line}")

    # A stopped tunnel's forward cannot start again: said, not hidden.
    _ok(kernel, "t2.stop()")
    late = kernel.run("t2.forwards[0].restart()")
    assert late.reply["ename"] == "ForwardError"
    assert "not running" in late.reply["evalue"]

    # The manager closes (unload): the panel's ticker thread ends with it.
    ticking = (
        "any(x.name == 'nbtunnel-panel-ticker' "
        "for x in __import__('threading').enumerate())"
    )
    assert kernel.value(ticking) is True
    _ok(kernel, "%unload_ext nbtunnel")
    _ok(kernel, "import time; time.sleep(2.5)")
    assert kernel.value(ticking) is False


# The add box, as a person uses it: CSS classes find its widgets (a DOM query).
_BOX = """
def _find(root, cls):
    found = [root] if cls in getattr(root, "_dom_classes", ()) else []
    for child in getattr(root, "children", ()):
        found += _find(child, cls)
    return found

def type_and_add(panel, text):
    (entry,) = _find(panel, "nbt-new")
    (add,) = _find(panel, "nbt-add")
    entry.value = text
    add.click()
    return " ".join(e.value for e in _find(panel, "nbt-add-error"))
"""


def test_the_panels_add_box_follows_the_managers_rules(
    kernel: Kernel, sshd, targets
) -> None:
    _ok(kernel, "%load_ext nbtunnel\nimport nbtunnel\np = nbtunnel.panel()")
    _ok(kernel, _BOX)
    port = clients.free_port()
    line = sshd.line("-L", f"{port}:{targets.host}:{targets.echo}")
    assert kernel.value(f"type_and_add(p, {line!r})").strip() == ""
    # The same line again: the same tunnel, as %tunnel and nbtunnel.open do.
    assert kernel.value(f"type_and_add(p, {line!r})").strip() == ""
    assert kernel.value("len(nbtunnel.tunnels())") == 1
    # A second line to the same destination joins its tunnel.
    more = sshd.line("-L", f"0:{targets.host}:{targets.http}")
    assert kernel.value(f"type_and_add(p, {more!r})").strip() == ""
    assert kernel.value("[len(t.forwards) for t in nbtunnel.tunnels()]") == [2]
    # A fixed port held by another forward: the holder named in the box.
    other = sshd.line(
        "-o", "ServerAliveInterval=7", "-L", f"{port}:{targets.host}:{targets.http}"
    )
    said = kernel.value(f"type_and_add(p, {other!r})")
    assert f"port {port}" in said and "is held by tunnel" in said
    assert kernel.value("len(nbtunnel.tunnels())") == 1
    assert _echoes(port)
    _ok(kernel, "%tunnel stop all")


def test_without_ipywidgets_the_panel_says_what_to_install(kernel: Kernel) -> None:
    # None in sys.modules: the kernel's `import ipywidgets` fails for real,
    # as where it is not installed.
    _ok(
        kernel,
        "import sys\nassert 'ipywidgets' not in sys.modules\n"
        "sys.modules['ipywidgets'] = None\n%load_ext nbtunnel",
    )
    install = "pip install 'nbtunnel[notebook]'"
    magic = kernel.run("%tunnel panel")
    assert magic.reply["ename"] == "UsageError"  # one red line
    assert magic.reply["evalue"].startswith("the panel needs ipywidgets")
    assert magic.reply["evalue"].endswith(install)
    assert "\n" not in magic.reply["evalue"] and "Traceback" not in magic.text
    api = kernel.run("import nbtunnel\nnbtunnel.panel()")
    assert api.reply["ename"] == "MissingDependencyError"
    assert api.reply["evalue"] == magic.reply["evalue"]
    # Not chained to the raw ImportError: one traceback, ending in that line.
    assert "During handling" not in api.text and "direct cause" not in api.text
    assert kernel.value("isinstance(sys.last_value, ImportError)") is True
