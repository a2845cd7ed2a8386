"""benchmarks/compare.py end to end in its --quick mode (a smoke test of the script)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(180)
def test_quick_run_of_openssh_and_nbtunnel_with_the_fast_path_on_and_off(
    tmp_path: Path,
) -> None:
    out, png = tmp_path / "compare.json", tmp_path / "chart.png"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.compare",
            "--quick",
            "--systems",
            "openssh,nbtunnel,nbtunnel-plain",
            "--json",
            str(out),
            "--png",
            str(png),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    doc = json.loads(out.read_text())
    systems = ["openssh", "nbtunnel", "nbtunnel-plain"]
    assert [r["system"] for r in doc["runs"]] == systems
    # The fast path off is its own row, told apart in the table and the JSON.
    assert "NBTUNNEL_FASTPATH=0" in doc["config"]["ciphers"]["nbtunnel-plain"]
    header = next(line for line in run.stdout.splitlines() if line.startswith("metric"))
    assert header.split()[1:] == systems
    for record in doc["runs"]:
        steps = {k: v for k, v in record.items() if isinstance(v, dict)}
        assert "error" not in record
        assert not [k for k, v in steps.items() if "error" in v], steps
        assert record["conc_100"]["ok"] == 100
    for system in ("nbtunnel", "nbtunnel-plain"):
        for step in ("L_up_mb_s", "L_down_mb_s", "R_up_mb_s", "R_down_mb_s"):
            assert doc["summary"][step]["systems"][system]["median"] > 0
    # busy / idle compares transfers of one size, the idle one run just before.
    for record in doc["runs"]:
        assert list(record).index("idle_L_up") + 1 == list(record).index("busy_L_up")
    ratio = doc["summary"]["busy_over_idle_L_up"]["systems"]["nbtunnel"]["median"]
    idle = doc["summary"]["idle_L_up_mb_s"]["systems"]["nbtunnel"]["median"]
    busy = doc["summary"]["busy_L_up_mb_s"]["systems"]["nbtunnel"]["median"]
    assert ratio == pytest.approx(busy / idle)
    assert doc["targets"]
    assert "nbtunnel's targets" in run.stdout
    if importlib.util.find_spec("matplotlib") is not None:
        assert png.stat().st_size > 10_000
