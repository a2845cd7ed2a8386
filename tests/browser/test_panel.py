"""The widget panel in JupyterLab, clicked in a real browser, forwarding for real.

A notebook opens a tunnel through the rig's sshd (to an echo target only
the server reaches) and shows the panel; Playwright clicks it in Debian's
chromium, and this process checks the ports the clicks open and close.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.rig import clients

from .conftest import ROOT, Lab, open_notebook, run_all, write_notebook

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.notebook,
    pytest.mark.slow,
    pytest.mark.timeout(300),
]

PORT = re.compile(r"this machine 127\.0\.0\.1:(\d+)")
UI = 30_000  # ms: a click's round trip through the kernel, with room to spare


def _port(row: Any) -> int:
    found = PORT.search(row.locator(".nbt-what").inner_text())
    assert found, row.inner_text()
    return int(found.group(1))


def _echoes(port: int) -> bool:
    return clients.echo_roundtrip("127.0.0.1", port, b"via the panel", 10) == (
        b"via the panel"
    )


def test_the_panel_in_jupyterlab(
    sync_api: Any, lab: Lab, page: Any, sshd, targets, tmp_path: Path
) -> None:
    expect = sync_api.expect
    started = time.monotonic()
    echo = f"0:{targets.host}:{targets.echo}"
    # A second forward to the server's own port 8888: nothing need answer
    # there for it to listen, and its row shows the link a web forward gets.
    line = sshd.line("-L", echo, "-L", "0:localhost:8888")
    write_notebook(
        lab.root / "panel.ipynb",
        [
            "import nbtunnel\n%load_ext nbtunnel\n"
            f"t = %tunnel {line}\np = %tunnel panel\np",
            "q = nbtunnel.panel()  # a second view of the same tunnels\nq",
        ],
    )
    open_notebook(page, lab, "panel.ipynb")
    ready = time.monotonic()
    run_all(page)

    panels = page.locator(".nbt-panel")
    expect(panels).to_have_count(2, timeout=60_000)
    panel, other = panels.nth(0), panels.nth(1)
    rows = panel.locator(".nbt-row")
    expect(rows).to_have_count(2, timeout=UI)
    row = rows.nth(0)
    expect(row.locator(".nbt-light")).to_have_text(re.compile(r"up$"), timeout=UI)
    port = _port(row)
    assert _echoes(port)
    web = _port(rows.nth(1))
    # Through this Jupyter server's jupyter-server-proxy, which the kernel
    # found by asking the running servers for its own id.
    expect(rows.nth(1).locator("a.nbt-link")).to_have_attribute(
        "href", f"/proxy/{web}/"
    )
    expect(rows.nth(1).locator("a.nbt-link")).to_have_attribute("target", "_blank")

    # Off: the port closes (connect refused); the row stays, in both panels.
    toggle = row.locator(".nbt-toggle")
    expect(toggle).to_have_class(re.compile(r"\bmod-active\b"))
    toggle.click()
    expect(row.locator(".nbt-light")).to_have_text(re.compile(r"stopped$"), timeout=UI)
    expect(toggle).not_to_have_class(re.compile(r"\bmod-active\b"))
    assert clients.wait_until(lambda: clients.port_is_closed("127.0.0.1", port), 5)
    with pytest.raises(ConnectionRefusedError):
        clients.echo_roundtrip("127.0.0.1", port, b"x", 5)
    first_of_other = other.locator(".nbt-row").nth(0).locator(".nbt-light")
    expect(first_of_other).to_have_text(re.compile(r"stopped$"), timeout=UI)

    # On again: the same port, echoing through the server again.
    toggle.click()
    expect(row.locator(".nbt-light")).to_have_text(re.compile(r"up$"), timeout=UI)
    assert _port(row) == port
    assert _echoes(port)
    expect(first_of_other).to_have_text(re.compile(r"up$"), timeout=UI)

    # A bad spec: said under the box, nothing raised, nothing added.
    entry = panel.locator(".nbt-new input")
    add = panel.locator(".nbt-add")
    entry.fill("-L 9000:db")
    add.click()
    error = panel.locator(".nbt-add-error").first
    expect(error).to_contain_text("'9000:db'", timeout=UI)
    expect(error).to_contain_text("accepted forms")
    expect(rows).to_have_count(2)

    # A good one, forwards alone: added to the open tunnel, and it works.
    entry.fill(f"-L {echo}")
    add.click()
    expect(rows).to_have_count(3, timeout=UI)
    expect(error).to_be_hidden(timeout=UI)
    added = rows.nth(2)
    expect(added.locator(".nbt-light")).to_have_text(re.compile(r"up$"), timeout=UI)
    new_port = _port(added)
    assert new_port not in (port, web)
    assert _echoes(new_port)
    expect(other.locator(".nbt-row")).to_have_count(3, timeout=UI)
    # The bytes just sent show up, live.
    expect(added.locator(".nbt-traffic")).to_contain_text("↑ 13 B", timeout=UI)

    # The test's own pictures (and a dark one); NBTUNNEL_UPDATE_PICTURES=1
    # also makes the first the README's (docs/panel.png): a test run never
    # writes into tracked files unless asked to.
    shot = tmp_path / "panel.png"
    panel.screenshot(path=str(shot))
    if os.environ.get("NBTUNNEL_UPDATE_PICTURES") == "1":
        shutil.copyfile(shot, ROOT / "docs" / "panel.png")
    page.evaluate(
        "window.jupyterapp.commands.execute('apputils:change-theme',"
        " {theme: 'JupyterLab Dark'})"
    )
    expect(page.locator("body[data-jp-theme-light='false']")).to_have_count(
        1, timeout=UI
    )
    # Lab covers the page with its splash while it changes themes.
    page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=UI)
    panel.screenshot(path=str(tmp_path / "panel-dark.png"))

    # Remove: the row goes from both panels and the port closes.
    added.locator(".nbt-remove").click()
    expect(rows).to_have_count(2, timeout=UI)
    expect(other.locator(".nbt-row")).to_have_count(2, timeout=UI)
    assert clients.wait_until(lambda: clients.port_is_closed("127.0.0.1", new_port), 5)
    print(
        f"lab+notebook ready {ready - started:.1f} s, "
        f"clicks done {time.monotonic() - ready:.1f} s; screenshots in {tmp_path}"
    )


def test_the_panel_inside_layouts_of_ones_own(
    sync_api: Any, lab: Lab, page: Any, sshd, targets
) -> None:
    # The panel is a VBox: a child of a VBox and the centre of an AppLayout,
    # as in a dashboard, still live and clickable there.
    expect = sync_api.expect
    line = sshd.line("-L", f"0:{targets.host}:{targets.echo}")
    write_notebook(
        lab.root / "layout.ipynb",
        [
            "import ipywidgets as w, nbtunnel\n%load_ext nbtunnel\n"
            f"t = %tunnel {line}\n"
            "box = w.VBox([w.HTML('<b>my dashboard</b>'), nbtunnel.panel(),"
            " w.Label('the rest of my dashboard')])\n"
            "box.add_class('my-box')\nbox",
            "app = w.AppLayout(header=w.Label('header'), center=nbtunnel.panel(),"
            " footer=w.Label('footer'))\napp.add_class('my-app')\napp",
        ],
    )
    open_notebook(page, lab, "layout.ipynb")
    run_all(page)

    inside = page.locator(".my-box > .nbt-panel")
    expect(inside).to_have_count(1, timeout=60_000)
    expect(page.locator(".my-box")).to_contain_text("the rest of my dashboard")
    in_app = page.locator(".my-app .nbt-panel")
    expect(in_app).to_have_count(1, timeout=UI)
    expect(page.locator(".my-app")).to_contain_text("footer")
    row = inside.locator(".nbt-row")
    expect(row).to_have_count(1, timeout=UI)
    expect(row.locator(".nbt-light")).to_have_text(re.compile(r"up$"), timeout=UI)
    port = _port(row)
    assert _echoes(port)

    # Its toggle works in there: off closes the port, in both layouts.
    toggle = row.locator(".nbt-toggle")
    toggle.click()
    expect(row.locator(".nbt-light")).to_have_text(re.compile(r"stopped$"), timeout=UI)
    assert clients.wait_until(lambda: clients.port_is_closed("127.0.0.1", port), 5)
    app_light = in_app.locator(".nbt-row .nbt-light")
    expect(app_light).to_have_text(re.compile(r"stopped$"), timeout=UI)
    toggle.click()
    expect(row.locator(".nbt-light")).to_have_text(re.compile(r"up$"), timeout=UI)
    assert _port(row) == port and _echoes(port)
    expect(app_light).to_have_text(re.compile(r"up$"), timeout=UI)
