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
def test_quick_run_of_openssh_and_nbtunnel(tmp_path: Path) -> None:
    out, png = tmp_path / "compare.json", tmp_path / "chart.png"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.compare",
            "--quick",
            "--systems",
            "openssh,nbtunnel",
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
    assert [r["system"] for r in doc["runs"]] == ["openssh", "nbtunnel"]
    for record in doc["runs"]:
        steps = {k: v for k, v in record.items() if isinstance(v, dict)}
        assert "error" not in record
        assert not [k for k, v in steps.items() if "error" in v], steps
        assert record["conc_100"]["ok"] == 100
    assert doc["summary"]["L_up_mb_s"]["systems"]["nbtunnel"]["median"] > 0
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
