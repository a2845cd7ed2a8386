"""Soak: 10 GiB through one ``-L`` forward, sha256 checked, throughput over time.

Not in the default run: pyproject.toml's addopts deselect the ``soak``
marker.  Run it with

    pytest -m soak tests/soak -s

It uploads 10 GiB of the rig's pattern through the forward to the sink
(behind the rig's sshd: in netns mode, where only the sshd reaches it),
hashing what it sends, while the sink hashes what it receives; the two
sha256 digests and byte counts must match.  It prints MB/s for every GiB as
it goes and writes the figures to benchmarks/results/soak.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import statistics
import time
from pathlib import Path

import paramiko
import pytest
from nbtunnel import Manager, __version__

from tests.rig import clients
from tests.rig.data import chunks

# integration too, so that `-m "not integration"` (the unit run) leaves it out.
pytestmark = [pytest.mark.soak, pytest.mark.integration]

GiB = 1 << 30
TOTAL = 10 * GiB
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "soak.json"


def upload(port: int, total: int) -> tuple[str, list[float], str, float]:
    """Send ``total`` bytes of the pattern to the sink behind ``port``.

    Returns the sha256 of what was sent, the seconds each GiB took, the
    sink's reply ("count sha256") and the seconds in all.
    """
    h = hashlib.sha256()
    per_gib: list[float] = []
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        started = last = time.monotonic()
        for piece in chunks(total):
            sock.sendall(piece)
            h.update(piece)
            sent += len(piece)
            if sent % GiB == 0:
                now = time.monotonic()
                per_gib.append(now - last)
                print(
                    f"GiB {sent // GiB:2d}: {GiB / (now - last) / 1e6:6.1f} MB/s",
                    flush=True,
                )
                last = now
        sock.shutdown(socket.SHUT_WR)
        reply = clients.recv_all(sock, 120).decode()
        elapsed = time.monotonic() - started
    return h.hexdigest(), per_gib, reply, elapsed


@pytest.mark.timeout(3600)
def test_10_gib_through_one_local_forward(rig, sshd, targets) -> None:
    manager = Manager(engine="process")
    try:
        t = manager.open(sshd.line("-L", f"0:{targets.host}:{targets.sink}"))
        fwd = t.forwards[0]
        digest, per_gib, reply, elapsed = upload(fwd.listen_port, TOTAL)
        count, their_digest = reply.split()
        stats = fwd.stats
    finally:
        manager.close()
    rates = [GiB / s / 1e6 for s in per_gib]
    result = {
        "what": "10 GiB uploaded through one -L forward to the rig's sink",
        "bytes": TOTAL,
        "seconds": round(elapsed, 2),
        "mean_mb_s": round(TOTAL / elapsed / 1e6, 1),
        "per_gib_mb_s": [round(r, 1) for r in rates],
        "min_mb_s": round(min(rates), 1),
        "median_mb_s": round(statistics.median(rates), 1),
        "max_mb_s": round(max(rates), 1),
        "sha256": digest,
        "sha256_ok": their_digest == digest,
        "bytes_at_target": int(count),
        "engine": "process",
        "rig_mode": rig.mode,
        "nbtunnel": __version__,
        "paramiko": paramiko.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    assert int(count) == TOTAL
    assert their_digest == digest
    assert stats.bytes_to_target == TOTAL
    assert len(per_gib) == TOTAL // GiB
