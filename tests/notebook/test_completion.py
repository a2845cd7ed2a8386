"""Tab completion of %tunnel in a real kernel, through jupyter_client's
complete request (what JupyterLab sends on Tab), against the rig's sshd."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nbtunnel.grammar.flags import CHOICES
from nbtunnel.ui.completion import CANCEL, FLAGS, SUBCOMMANDS

from .conftest import Kernel

pytestmark = [pytest.mark.integration, pytest.mark.notebook]

PYTHON = {"and", "import", "abs", "print", "%load_ext"}  # what it offered before


def _complete(kernel: Kernel, code: str) -> dict[str, Any]:
    reply = kernel.kc.complete(code, len(code), reply=True, timeout=30)
    content: dict[str, Any] = reply["content"]
    assert content["status"] == "ok", content
    assert content["cursor_end"] == len(code)
    return content


def _matches(kernel: Kernel, code: str, token: str = "") -> list[str]:
    """The matches, which replace ``token`` (the end of ``code``)."""
    content = _complete(kernel, code)
    if content["matches"]:
        assert content["cursor_start"] == len(code) - len(token), content
    return list(content["matches"])


def _ok(kernel: Kernel, code: str) -> None:
    ran = kernel.run(code)
    assert ran.ok, ran.text


def test_the_magic_completes_its_own_words(
    kernel: Kernel, sshd, targets, here, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        "Host warehouse bastion *.internal\n  User analyst\nInclude extra\n"
    )
    (home / ".ssh" / "extra").write_text("Host web-1\n")
    other = tmp_path / "other_config"
    other.write_text("Host only-here\n")
    _ok(kernel, f"import os; os.environ['HOME'] = {str(home)!r}")
    _ok(kernel, "%load_ext nbtunnel")
    _ok(kernel, "%load_ext nbtunnel")  # twice: one completer

    first = _matches(kernel, "%tunnel ")
    assert first == [*SUBCOMMANDS, *FLAGS, *CANCEL, "warehouse", "bastion", "web-1"]
    assert _matches(kernel, "%tunnel -", "-") == [*FLAGS, *CANCEL]
    assert _matches(kernel, "%tunnel pa", "pa") == ["panel"]
    # -o: the key with its "=", then the values the options table allows.
    assert _matches(kernel, "%tunnel -o stricthost", "stricthost") == [
        "StrictHostKeyChecking="
    ]
    values = _matches(kernel, "%tunnel -o StrictHostKeyChecking=")
    assert values == list(CHOICES["StrictHostKeyChecking"])
    assert _matches(kernel, "%tunnel -oBatchMode=y", "y") == ["yes"]
    # Hosts of the ssh config, in the destination and after -J; -F's file.
    line = "t = %tunnel -L 0:db:5432 analyst@ware"
    assert _matches(kernel, line, "ware") == ["warehouse"]
    assert _matches(kernel, "%tunnel -J bastion,w", "w") == ["warehouse", "web-1"]
    with_f = f"%tunnel -F {other} -L 0:db:5432 o"
    assert _matches(kernel, with_f, "o") == ["only-here"]
    # A path after -i: IPython's file completion, and nothing else.
    assert _matches(kernel, f"%tunnel -i {home}/.s", f"{home}/.s") == [f"{home}/.ssh/"]
    # Nothing of Python's where the magic has words of its own.
    for code in ("%tunnel ", "%tunnel -", "%tunnel -o StrictHostKeyChecking="):
        assert not PYTHON & set(_complete(kernel, code)["matches"]), code
    # In a cell of several lines, on the line with the cursor.
    assert _matches(kernel, "x = 1\n%tunnel -o Compression=", "") == ["yes", "no"]
    # "tunnel ..." where IPython's automagic runs it, Python's names elsewhere.
    assert _matches(kernel, "tunnel -", "-") == [*FLAGS, *CANCEL]
    assignment = _matches(kernel, "tunnel = b", "b")
    assert "bytes" in assignment and "-L" not in assignment
    assert "-L" not in _complete(kernel, "tunnel.")["matches"]
    _ok(kernel, "tunnel = 1")  # a name of the user's now shadows the magic
    assert "-L" not in _complete(kernel, "tunnel -")["matches"]
    _ok(kernel, "del tunnel")

    # The live tunnels: their names after stop, their ports after -K.
    _ok(
        kernel,
        "t = %tunnel --name db "
        + sshd.line(
            "-L",
            f"0:{targets.host}:{targets.echo}",
            "-R",
            f"127.0.0.1:0:127.0.0.1:{here.echo}",
        ),
    )
    local, remote = kernel.value("[f.listen_port for f in t.forwards]")
    assert _matches(kernel, "%tunnel stop ") == ["db", "all"]
    assert _matches(kernel, "%tunnel -KL ") == [str(local)]
    assert _matches(kernel, "%tunnel -KR ") == [str(remote)]
    assert str(local) not in _matches(kernel, "%tunnel -KD ")
    _ok(kernel, f"%tunnel -KL {local}")
    assert str(local) not in _matches(kernel, "%tunnel -KL ")  # cancelled
    _ok(kernel, "%tunnel stop all")
    assert _matches(kernel, "%tunnel stop ") == ["all"]

    # Unloaded: the completer goes with the magic.
    _ok(kernel, "%unload_ext nbtunnel")
    assert "-L" not in _complete(kernel, "%tunnel -")["matches"]
    count = (
        "sum(getattr(m, 'matcher_identifier', '') == 'nbtunnel.tunnel_magic' "
        "for m in get_ipython().Completer.custom_matchers)"
    )
    assert kernel.value(count) == 0
    _ok(kernel, "%load_ext nbtunnel")
    assert kernel.value(count) == 1
    assert _matches(kernel, "%tunnel -KL", "-KL") == ["-KL"]
