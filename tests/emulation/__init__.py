"""macOS and Windows emulated on Linux, to keep them working between real runs.

``startup/sitecustomize.py`` removes from an interpreter what each OS lacks
(``NBTUNNEL_EMULATE=macos|windows``, that folder on ``PYTHONPATH``: every
Python process started with that environment, nbtunnel's engine included).
``drive.py`` is what a notebook would do, run under it; ``test_emulated.py``
runs the demo and real -L/-R/-D forwards through the rig's sshd that way.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STARTUP = Path(__file__).resolve().parent / "startup"
TARGETS = ("macos", "windows")


def emulated_env(
    target: str, *, marks: Path | None = None, home: Path | None = None
) -> dict[str, str]:
    """The environment of a process (and its children) run as on ``target``."""
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(STARTUP), str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    env["NBTUNNEL_EMULATE"] = target
    if target == "windows":
        # Output to a pipe or a file is encoded with the ANSI code page
        # there (cp1252 in the west), which has no arrows or box lines.
        env["PYTHONIOENCODING"] = "cp1252"
    if marks is not None:
        env["NBTUNNEL_EMULATE_MARKS"] = str(marks)
    if home is not None:
        env["HOME"] = str(home)
    return env
