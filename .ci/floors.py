"""Prints pyproject's dependency floors as exact pins: what the floors jobs install.

The floors jobs (.ci/run and .github/workflows/ci.yml) install these, so the
versions they test are the ones pyproject.toml claims and cannot drift apart.
paramiko's own floors of bcrypt and PyNaCl (its requirements at the paramiko
floor) are pinned too: nbtunnel's ed25519 keys go through PyNaCl.
``floors.py dask`` prints the floors of the ``dask`` extra instead.
Runs on any Python 3.10+ (no tomllib there), from any folder.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PARAMIKOS_OWN_FLOORS = ["bcrypt==3.2.0", "pynacl==1.5.0"]

text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
# No argument: the dependencies; an extra's name (``dask``): that extra's.
extra = sys.argv[1] if len(sys.argv) > 1 else None
key = "dependencies" if extra is None else re.escape(extra)
found = re.search(rf"^{key} = \[(.*)\]$", text, re.MULTILINE)
if found is None:
    raise SystemExit(f"pyproject.toml: no one-line `{key} = [...]` to read")
pins = []
for requirement in re.findall(r'"([^"]+)"', found.group(1)):
    name, sep, floor = requirement.partition(">=")
    if not sep or not re.fullmatch(r"[0-9][0-9.]*", floor):
        raise SystemExit(f"pyproject.toml: {requirement!r} is not `name>=version`")
    pins.append(f"{name}=={floor}")
print(" ".join(pins + (PARAMIKOS_OWN_FLOORS if extra is None else [])))
