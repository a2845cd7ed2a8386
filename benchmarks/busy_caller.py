"""Does a forward keep its speed while the caller's main thread computes?

The caller (this process) opens a -L forward to the rig's sink through the
rig's real sshd, then a separate client process uploads N MiB through it
while this process either waits (idle) or spins a pure-Python loop in its
main thread (busy), as a notebook cell does.  Engines: "process" (the
default: forwarding in a process of its own) and "inline" (threads in the
caller, which share the GIL with the loop).  Conditions alternate run by
run; the report gives medians and the busy/idle ratio of each engine.

    python -m benchmarks.busy_caller [--mib 256] [--inline-mib 16] [--runs 3]

The inline engine moves less data (--inline-mib): under a busy caller it
crawls, and its busy/idle ratio compares runs of the same size anyway.

Run from the repository root.  As root the sshd and the sink sit in a
network namespace of the rig's own; otherwise on loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nbtunnel import Manager  # noqa: E402
from tests.rig.data import expected_sha256  # noqa: E402
from tests.rig.rig import start_rig  # noqa: E402

CLIENT = """
import json, sys, time
from tests.rig.clients import sink_upload
port, n, timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
t0 = time.perf_counter()
try:
    count, digest = sink_upload("127.0.0.1", port, n, timeout=timeout)
except OSError as exc:
    print(json.dumps({"error": repr(exc), "seconds": time.perf_counter() - t0}))
else:
    print(json.dumps({"seconds": time.perf_counter() - t0, "count": count, "sha256": digest}))
"""
# A send that makes no progress for this long counts as a stall.
STALL_SECONDS = 30.0


def _spin_until_done(proc: subprocess.Popen[str]) -> int:
    """A pure-Python loop on the main thread, like a computing cell."""
    iterations = 0
    total = 0
    while proc.poll() is None:
        for i in range(20_000):
            total += i * i % 7
        iterations += 1
    return iterations


def one_run(port: int, nbytes: int, busy: bool) -> dict[str, float]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(port), str(nbytes), str(STALL_SECONDS)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    cpu0 = time.process_time()
    if busy:
        _spin_until_done(proc)
    out, _ = proc.communicate()
    caller_cpu = time.process_time() - cpu0
    result = json.loads(out)
    if "error" in result:
        # The forward stopped moving data: report it as 0 MB/s, not a crash.
        return {"mb_s": 0.0, "caller_cpu_s": caller_cpu, "stalled": 1.0}
    if result["count"] != nbytes or result["sha256"] != expected_sha256(nbytes):
        raise SystemExit(f"transfer corrupted: {result}")
    return {
        "mb_s": nbytes / result["seconds"] / 1e6,
        "caller_cpu_s": caller_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--inline-mib", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--engines", default="process,inline")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    sizes = {"process": args.mib * 1024 * 1024, "inline": args.inline_mib * 1024 * 1024}
    engines = args.engines.split(",")

    results: dict[str, dict[str, list[float]]] = {
        e: {"idle": [], "busy": []} for e in engines
    }
    with start_rig() as rig:
        managers = {e: Manager(engine=e) for e in engines}  # type: ignore[arg-type]
        try:
            ports = {}
            for engine, manager in managers.items():
                line = rig.sshd.line("-L", f"0:{rig.targets.host}:{rig.targets.sink}")
                ports[engine] = manager.open(line).forwards[0].listen_port
            for run in range(args.runs):
                # Alternate everything run by run so drift hits all alike.
                order = [(e, b) for e in engines for b in (False, True)]
                if run % 2:
                    order.reverse()
                for engine, busy in order:
                    r = one_run(ports[engine], sizes[engine], busy)
                    label = "busy" if busy else "idle"
                    results[engine][label].append(r["mb_s"])
                    stalled = (
                        " STALLED (no progress for 30 s)" if r.get("stalled") else ""
                    )
                    print(
                        f"run {run + 1} {engine:7s} {label}: {r['mb_s']:7.1f} MB/s "
                        f"(caller CPU {r['caller_cpu_s']:.1f} s){stalled}",
                        flush=True,
                    )
        finally:
            for manager in managers.values():
                manager.close()

    print(f"\nupload through -L, sha256 verified, medians of {args.runs}:")
    print(
        f"{'engine':8s} {'MiB':>5s} {'idle MB/s':>10s} {'busy MB/s':>10s} {'busy/idle':>10s}"
    )
    summary = {}
    for engine in engines:
        idle = statistics.median(results[engine]["idle"])
        busy = statistics.median(results[engine]["busy"])
        summary[engine] = {"idle": idle, "busy": busy, "ratio": busy / idle}
        mib = sizes[engine] // 1024 // 1024
        print(f"{engine:8s} {mib:5d} {idle:10.1f} {busy:10.1f} {busy / idle:10.2f}")
    print(f"rig mode: {rig.mode}, cores: {os.cpu_count()}")
    if args.json:
        args.json.write_text(
            json.dumps({"runs": results, "summary": summary}, indent=2)
        )


if __name__ == "__main__":
    main()
