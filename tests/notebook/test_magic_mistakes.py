"""%tunnel given a mistake, in a real kernel (jupyter_client) against the
rig's sshd: one red line with what was probably meant; and the tunnel's
events naming it and its forwards as its table does."""

from __future__ import annotations

import pytest

from tests.rig import clients

from .conftest import Kernel

pytestmark = [pytest.mark.integration, pytest.mark.notebook]


def _said(kernel: Kernel, line: str) -> str:
    """The one line %tunnel said for a mistake."""
    ran = kernel.run(f"%tunnel {line}")
    assert not ran.ok and ran.reply["ename"] == "UsageError", ran.text
    assert "Traceback" not in ran.text
    return str(ran.reply["evalue"])


def test_mistakes_get_what_was_meant(kernel: Kernel, sshd, targets) -> None:
    assert kernel.run("%load_ext nbtunnel").ok
    assert _said(kernel, "stp x") == "unknown command 'stp'; did you mean %tunnel stop?"
    assert _said(kernel, "-o StrictHostKeyCheking=no -L 0:a:1 h") == (
        "-o 'StrictHostKeyCheking': nbtunnel has no such option; "
        "did you mean StrictHostKeyChecking?"
    )
    assert _said(kernel, "--nmae db -L 0:a:1 h").endswith("did you mean --name?")
    # A command given a word it does not take: its usage, never itself.
    assert _said(kernel, "list x") == (
        "%tunnel list does not take 'x'; usage: %tunnel [list]"
    )
    assert _said(kernel, "-o ConnectionAttempts=3 -L 0:a:1 h") == (
        "-o 'ConnectionAttempts': an ssh option nbtunnel does not support (yet); "
        "the supported ones: nbtunnel --help (%tunnel? in a notebook)"
    )

    line = sshd.line("-L", f"0:{targets.host}:{targets.echo}")
    assert kernel.run(f"t = %tunnel --name db {line}").ok
    assert _said(kernel, "stop dbb") == (
        "no tunnel named 'dbb' is open; did you mean db?"
    )
    assert _said(kernel, "stop web") == "no tunnel named 'web' is open (open: db)"
    assert kernel.run("%tunnel stop db").ok


def test_events_name_tunnels_and_forwards_as_the_table_does(
    kernel: Kernel, sshd, targets
) -> None:
    assert kernel.run("%load_ext nbtunnel").ok
    line = sshd.line("-L", f"0:{targets.host}:{targets.echo}")
    assert kernel.run(f"t = %tunnel --name db {line}").ok
    port = kernel.value("t.forwards[0].listen_port")
    spec = kernel.value("t.forwards[0].snapshot().spec")
    assert spec == f"-L 0:{targets.host}:{targets.echo}"
    assert kernel.run(f"%tunnel -KL {port}").ok
    assert clients.wait_until(lambda: clients.port_is_closed("127.0.0.1", port), 5)

    def stopped() -> bool:
        return bool(
            kernel.value(f"any('forward {spec} stopped' in e for e in t.events)")
        )

    assert clients.wait_until(stopped, 5), kernel.value("list(t.events)")
    shown = kernel.run("t").text
    assert shown.splitlines()[1].startswith("db ")  # the table's row: its label
    assert f"forward {spec} stopped" in shown
    assert "forward 0" not in shown
