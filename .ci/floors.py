"""Prints pyproject's dependency floors as exact pins: what the floors jobs install.

The floors jobs (.ci/run and .github/workflows/ci.yml) install these, so the
versions they test are the ones pyproject.toml claims and cannot drift apart.
paramiko's own floors of bcrypt and PyNaCl (its requirements at the paramiko
floor) are pinned too: nbtunnel's ed25519 keys go through PyNaCl.
Runs on any Python 3.10+ (no tomllib there), from any folder.
"""

from __future__ import annotations

import re
from pathlib import Path

PARAMIKOS_OWN_FLOORS = ["bcrypt==3.2.0", "pynacl==1.5.0"]

text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
found = re.search(r"^dependencies = \[(.*)\]$", text, re.MULTILINE)
if found is None:
    raise SystemExit("pyproject.toml: no one-line `dependencies = [...]` to read")
pins = []
for requirement in re.findall(r'"([^"]+)"', found.group(1)):
    name, sep, floor = requirement.partition(">=")
    if not sep or not re.fullmatch(r"[0-9][0-9.]*", floor):
        raise SystemExit(f"pyproject.toml: {requirement!r} is not `name>=version`")
    pins.append(f"{name}=={floor}")
print(" ".join(pins + PARAMIKOS_OWN_FLOORS))
