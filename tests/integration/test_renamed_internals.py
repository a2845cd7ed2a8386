"""A paramiko that renamed one of the private names the gate uses.

For each of nine names, a copy of the installed paramiko with that name
renamed throughout its source goes first on PYTHONPATH of a separate
Python, and so of the engine process it starts.  A tunnel with -L (both
ways), -R and -D through the rig's sshd then carries data with checksums
while the copy re-keys every MiB (its REKEY_BYTES is patched too).  Each run
must pass, or fail within seconds with one line naming paramiko: never hang,
never show a traceback.  With the gate's probe (nbtunnel/_paramiko/probe.py)
every one of the nine passes: a feature that needed the name is off, or
(the re-key fix since it stopped using paramiko's handler tables) does
without it.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import paramiko
import pytest

from tests.rig import clients
from tests.rig.data import expected_sha256, pattern

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
# Each step of one run; a run that takes longer has hung.
STEP = 30.0

# name -> (pattern, replacement) over every .py file of paramiko.
RENAMES = {
    "_check_keepalive": (r"\b_check_keepalive\b", "_check_keepalive_renamed"),
    "_trigger_rekey": (r"\b_trigger_rekey\b", "_trigger_rekey_renamed"),
    "_handler_table": (r"\b_handler_table\b", "_handler_table_renamed"),
    "_check_add_window": (r"\b_check_add_window\b", "_check_add_window_renamed"),
    "_wait_for_send_window": (
        r"\b_wait_for_send_window\b",
        "_wait_for_send_window_renamed",
    ),
    "_tcp_handler": (r"\b_tcp_handler\b", "_tcp_handler_renamed"),
    "_parse_request_success": (
        r"\b_parse_request_success\b",
        "_parse_request_success_renamed",
    ),
    # The Packetizer's AES-GCM nonces (name-mangled: _Packetizer__iv_in).
    "Packetizer.__iv": (r"\b__iv_(in|out)\b", r"__nonce_\1"),
    "BufferedPipe._cv": (r"\b_cv\b", "_cv_renamed"),
}

# Appended to the copy's __init__: which processes imported it, and each
# key exchange they finished (the first one and every re-key).
_MARKER = """

import os as _nbt_os

_nbt_mark = _nbt_os.environ.get("NBTUNNEL_TEST_MARK")
if _nbt_mark:
    with open(_nbt_mark, "a") as _nbt_file:
        _nbt_file.write(f"import {_nbt_os.getpid()}\\n")
    _nbt_activate = Transport._activate_outbound

    def _nbt_counting(self, *args, **kwargs):
        with open(_nbt_mark, "a") as file:
            file.write(f"kex {_nbt_os.getpid()}\\n")
        return _nbt_activate(self, *args, **kwargs)

    Transport._activate_outbound = _nbt_counting
"""

# The caller: opens the tunnel in an engine process, says its ports, waits
# for the test to be done with them, says each forward's failures.
_SCRIPT = """
import json, os, sys
from nbtunnel import Manager, TunnelError

manager = Manager(engine="process")
try:
    with manager.open(sys.argv[1]) as tunnel:
        ports = [f.listen_port for f in tunnel.forwards]
        print(json.dumps({"pid": os.getpid(), "ports": ports}), flush=True)
        sys.stdin.readline()
        failed = [[f.stats.connections_failed, f.stats.last_error]
                  for f in tunnel.forwards]
        print(json.dumps({"failed": failed}), flush=True)
except TunnelError as exc:
    print(exc, file=sys.stderr)
    sys.exit(1)
finally:
    manager.close()
"""


def _patched(tmp: Path, name: str) -> Path:
    """A copy of the installed paramiko with ``name`` renamed: its parent dir."""
    site = tmp / "site"
    copy = site / "paramiko"
    shutil.copytree(
        Path(paramiko.__file__).parent,
        copy,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    pattern_, replacement = RENAMES[name]
    renamed = 0
    for path in copy.glob("*.py"):
        text, n = re.subn(pattern_, replacement, path.read_text())
        if n:
            path.write_text(text)
            renamed += n
    if not renamed:
        pytest.skip(f"paramiko {paramiko.__version__} has no {name} to rename")
    packet = copy / "packet.py"
    text, n = re.subn(
        r"REKEY_BYTES = pow\(2, 29\)", "REKEY_BYTES = pow(2, 20)", packet.read_text()
    )
    assert n == 1, "paramiko's REKEY_BYTES is spelled differently now"
    packet.write_text(text)
    init = copy / "__init__.py"
    init.write_text(init.read_text() + _MARKER)
    return site


def _lines(stream, into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


@pytest.mark.parametrize("name", list(RENAMES))
def test_a_renamed_private_name_falls_back(
    name: str, tmp_path: Path, sshd, targets, here
) -> None:
    site = _patched(tmp_path, name)
    mark = tmp_path / "mark"
    line = sshd.line(
        *("-L", f"0:{targets.host}:{targets.sink}"),
        *("-L", f"0:{targets.host}:{targets.source}"),
        *("-R", f"0:127.0.0.1:{here.echo}"),
        *("-D", "0"),
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
        "NBTUNNEL_TEST_MARK": str(mark),
    }
    env.pop("NBTUNNEL_FASTPATH", None)
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, line],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    out: queue.Queue[str | None] = queue.Queue()
    errors: list[str] = []
    readers = [
        threading.Thread(target=_lines, args=(proc.stdout, out), daemon=True),
        threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        first = out.get(timeout=STEP)
        if first is None:
            proc.wait(STEP)
            said = "".join(errors).strip()
            # Refused: one line naming paramiko, within seconds.
            assert proc.returncode == 1, said
            assert len(said.splitlines()) == 1 and "paramiko" in said, said
            pytest.fail(f"expected the fallback to carry the data, got: {said}")
        ready = json.loads(first)
        sink, source, remote, socks = ready["ports"]

        up = clients.sink_upload("127.0.0.1", sink, 8 * MiB, timeout=STEP)
        assert up == (8 * MiB, expected_sha256(8 * MiB))
        down = clients.source_download("127.0.0.1", source, 4 * MiB, timeout=STEP)
        assert down == (4 * MiB, expected_sha256(4 * MiB))
        echoed = clients.on_server(sshd, "echo", "127.0.0.1", remote, MiB, timeout=STEP)
        assert echoed == {"ok": True}
        data = pattern(MiB)
        assert clients.socks_echo(socks, targets.host, targets.echo, data) == data

        assert proc.stdin is not None
        proc.stdin.write("done\n")
        proc.stdin.flush()
        last = out.get(timeout=STEP)
        assert last is not None, "".join(errors)
        assert json.loads(last)["failed"] == [[0, None]] * 4
        assert proc.wait(STEP) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for reader in readers:
            reader.join(STEP)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    said = "".join(errors)
    assert "Traceback" not in said and "Exception in thread" not in said, said
    assert time.monotonic() - started < 4 * STEP

    # The engine (another process than the caller) ran the patched copy and
    # re-keyed with it, over and over (12 MiB at one re-key per MiB).
    seen = mark.read_text().split("\n")
    engines = {w.split()[1] for w in seen if w.startswith("import ")}
    engines.discard(str(ready["pid"]))
    assert len(engines) == 1, seen
    engine = engines.pop()
    assert sum(1 for w in seen if w == f"kex {engine}") >= 8, seen
