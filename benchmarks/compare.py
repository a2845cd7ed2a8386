"""nbtunnel against OpenSSH's ssh, sshtunnel and asyncssh, through a real sshd.

    python -m benchmarks.compare [--runs 5] [--mib 512] [--systems a,b,...] [--quick]

The world is the test rig's (tests/rig): a real OpenSSH sshd in a private
network namespace (as root; on loopback otherwise) with echo, sink and
source targets only it reaches, plus a sink and a source on this machine for
-R (the sinks are benchmarks/lsink.py, told the length up front: sshtunnel
passes no half-close on).  Systems alternate run by run (A B C D A B C D
...), each run of each system with a fresh forwarder, and every run
measures, through that one forwarder:

- the time from the call (for ssh: the process start; for nbtunnel: a new
  Manager, so the engine process's start is included) to the first byte
  echoed through the forward, and for nbtunnel also with its engine running
  (a second tunnel, over a new SSH connection);
- bulk throughput through -L and -R, towards the target ("up", the sink
  checks count and sha256) and from it ("down", the client checks them),
  and the forwarder's CPU seconds per GiB (user+sys from /proc);
- 64-byte request/response round trips (median and p99);
- -L upload (--busy-mib) and round trips again while the process that
  opened the tunnel spins its main thread in pure Python (a computing
  notebook kernel), the upload compared with an idle one of the same size
  run just before it;
- N connections opened at once through one -L, each echoing its own bytes
  (successes and wall time), for two N;
- new connections a second through one -L (4 client processes, each
  opening one short connection after another for --churn-seconds):
  "nbtunnel-anyuser" (-o OwnerOnly=no) against "nbtunnel" shows what the
  per-connection owner check costs;
- a burst of short connections through one -L (--burst-rate a second from
  4 client processes for --burst-seconds, each sending a little and going
  without reading, a third with a reset, a third after a half-close): how
  long the forwarder takes to let go of them all once it ends ("drain"),
  and the worst round trip of an unrelated client opening a connection to
  the same forward every 0.1 s meanwhile.

Clients are processes of their own (benchmarks/workload.py); for -R they
run in the server's namespace.  Prints one table (each system's median and
its ratio to openssh), writes benchmarks/results/compare.json and
docs/benchmark.png.  Compare systems within one run only: the machine is
shared, and each measurement records the CPU that other processes used
meanwhile ("other load", in cores).
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.rig import procs  # noqa: E402
from tests.rig.data import expected_sha256  # noqa: E402
from tests.rig.launcher import start_targets  # noqa: E402
from tests.rig.netns import sweep_stale  # noqa: E402
from tests.rig.rig import raise_nofile_limit, start_rig  # noqa: E402

from benchmarks import compare_report as report  # noqa: E402
from benchmarks.compare_systems import (  # noqa: E402
    CIPHERS,
    SYSTEMS,
    Running,
    World,
    lsink,
    missing,
)

MiB = 1024 * 1024
GiB = 1024 * MiB
HZ = os.sysconf("SC_CLK_TCK")
JSON_OUT = ROOT / "benchmarks" / "results" / "compare.json"
PNG_OUT = ROOT / "docs" / "benchmark.png"


# -- CPU accounting -----------------------------------------------------------


def proc_cpu(pid: int, *, reaped: bool = False) -> float:
    """user+sys seconds of pid (with ``reaped``: plus its reaped children's)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    f = raw[raw.rindex(")") + 2 :].split()
    ticks = int(f[11]) + int(f[12])
    if reaped:
        ticks += int(f[13]) + int(f[14])
    return ticks / HZ


def ours_cpu() -> float:
    """CPU of this process and everything it started, the exited ones included
    (their time moves into their parent's reaped counters)."""
    me = os.getpid()
    return sum(proc_cpu(p, reaped=True) for p in [me, *procs.descendants(me)])


def machine_busy() -> float:
    """CPU seconds all processes spent (user, nice, system) since boot."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return sum(int(x) for x in fields[1:4]) / HZ


class Meter:
    """CPU of the forwarder and of sshd, and the load of others, over a span."""

    def __init__(self, world: World, fwd: Running) -> None:
        self.world, self.fwd = world, fwd

    def _sshd(self) -> float:
        root = self.world.rig.sshd.pid
        return sum(proc_cpu(p, reaped=True) for p in [root, *procs.descendants(root)])

    def __enter__(self) -> Meter:
        self.t0 = time.perf_counter()
        self.c0 = (proc_cpu(self.fwd.pid), self._sshd(), ours_cpu(), machine_busy())
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.t0
        c1 = (proc_cpu(self.fwd.pid), self._sshd(), ours_cpu(), machine_busy())
        self.fwd_cpu = c1[0] - self.c0[0]
        self.sshd_cpu = c1[1] - self.c0[1]
        others = (c1[3] - self.c0[3]) - (c1[2] - self.c0[2])
        self.other_load = max(0.0, others) / wall if wall > 0 else 0.0


# -- clients --------------------------------------------------------------------

_clients: set[subprocess.Popen[str]] = set()


def client(
    world: World, args: list[Any], *, on_server: bool = False
) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "benchmarks.workload", *map(str, args)]
    if on_server:
        argv = world.rig.sshd.ns_argv(["env", f"PYTHONPATH={ROOT}", *argv])
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    _clients.add(proc)
    return proc


def finish(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"error": f"client still running after {timeout:.0f} s"}
    finally:
        _clients.discard(proc)
    try:
        result: dict[str, Any] = json.loads(out)
    except ValueError:
        return {"error": f"client exited with {proc.returncode}: {out[-300:]!r}"}
    return result


def kill_clients() -> None:
    for proc in list(_clients):
        with contextlib.suppress(OSError):
            proc.kill()
        proc.wait()
    _clients.clear()


# -- measurements -----------------------------------------------------------------


def bulk(
    world: World, fwd: Running, kind: str, way: str, n: int, *, busy: bool = False
) -> dict[str, Any]:
    """One transfer of n bytes through -L ("L") or -R ("R"), up or down."""
    target = "sink" if way == "up" else "source"
    port = fwd.ports[target if kind == "L" else "r" + target]
    verb = "upload" if way == "up" else "download"
    timeout = 120.0
    with Meter(world, fwd) as m:
        proc = client(
            world, [verb, "127.0.0.1", port, n, timeout], on_server=kind == "R"
        )
        if busy:
            fwd.busy(proc)
        r = finish(proc, 1800)
    if "error" in r:
        return {"error": r["error"]}
    if r["count"] != n or r["sha256"] != expected_sha256(n):
        return {"error": f"corrupt: {r['count']} bytes, sha256 {r['sha256'][:12]}"}
    return {
        "mb_s": n / r["seconds"] / 1e6,
        "cpu_s_per_gib": m.fwd_cpu / (n / GiB),
        "sshd_cpu_s_per_gib": m.sshd_cpu / (n / GiB),
        "other_load": m.other_load,
    }


# Round trips stop after this many seconds if the count is not reached (a
# forwarder starved by a busy caller takes tens of ms for each).
RTT_SECONDS = 15.0


def rtt(
    world: World, fwd: Running, count: int, *, busy: bool = False
) -> dict[str, Any]:
    port = fwd.ports["echo"]
    with Meter(world, fwd) as m:
        proc = client(world, ["rtt", "127.0.0.1", port, count, 64, 60, RTT_SECONDS])
        if busy:
            fwd.busy(proc)
        r = finish(proc, 600)
    if "error" in r:
        return {"error": r["error"]}
    if r["bad"]:
        return {"error": f"{r['bad']} of {r['count']} echoes came back wrong"}
    return {
        "median_us": r["median_us"],
        "p99_us": r["p99_us"],
        "count": r["count"],
        "cpu_us_per_rt": m.fwd_cpu / r["count"] * 1e6,
        "other_load": m.other_load,
    }


def conc(world: World, fwd: Running, n: int, size: int) -> dict[str, Any]:
    timeout = 300.0
    with Meter(world, fwd) as m:
        proc = client(world, ["conc", "127.0.0.1", fwd.ports["echo"], n, size, timeout])
        r = finish(proc, timeout + 60)
    if "error" in r:
        return {"error": r["error"], "ok": 0}
    out = {"ok": r["ok"], "seconds": r["seconds"], "cpu_s": m.fwd_cpu}
    out["other_load"] = m.other_load
    if r["errors"]:
        out["errors"] = r["errors"]
    return out


CHURN_CLIENTS = 4


def churn(world: World, fwd: Running, seconds: float) -> dict[str, Any]:
    """Connections a second through one -L: CHURN_CLIENTS processes, each
    opening one short connection after another (64 B echoed) for
    ``seconds``.  With OwnerOnly on, each is looked up before it is served."""
    port = fwd.ports["echo"]
    with Meter(world, fwd) as m:
        procs = [
            client(world, ["churn", "127.0.0.1", port, seconds])
            for _ in range(CHURN_CLIENTS)
        ]
        made = [finish(p, seconds + 120) for p in procs]
    errors = [r["error"] for r in made if "error" in r]
    if errors:
        return {"error": errors[0]}
    done = sum(r["done"] for r in made)
    return {
        "per_s": done / max(r["seconds"] for r in made),
        "done": done,
        "failed": sum(r["failed"] for r in made),
        "cpu_s": m.fwd_cpu,
        "other_load": m.other_load,
    }


BURST_CLIENTS = 4
# The forwarder's connections must be gone within this after a burst.
DRAIN_AT_MOST = 120.0


def burst(world: World, fwd: Running, cfg: argparse.Namespace) -> dict[str, Any]:
    """A burst of short connections and a bystander through -L to the echo
    (workload.py's burst and bystander); then the time until the forwarder
    holds no connection on that port."""
    from tests.rig.clients import tcp_connections

    port, seconds = fwd.ports["echo"], cfg.burst_seconds
    rate = cfg.burst_rate / BURST_CLIENTS
    with Meter(world, fwd) as m:
        bursts = [
            client(world, ["burst", "127.0.0.1", port, seconds, rate, f"b{k}"])
            for k in range(BURST_CLIENTS)
        ]
        by = client(world, ["bystander", "127.0.0.1", port, seconds, 0.1])
        made = [finish(p, seconds + 300) for p in bursts]
        ended = time.perf_counter()
        b = finish(by, seconds + 300)
        while tcp_connections([fwd.pid], port):
            if time.perf_counter() - ended > DRAIN_AT_MOST:
                return {"error": f"still draining after {DRAIN_AT_MOST:.0f} s"}
            time.sleep(0.02)
        drained = time.perf_counter() - ended
    failed = [r["error"] for r in [*made, b] if "error" in r]
    if failed:
        return {"error": failed[0]}
    total = sum(sum(r["made"].values()) for r in made)
    return {
        "drain_s": drained,
        "bystander_worst_s": b["worst_s"],
        "bystander_median_s": b["median_s"],
        "bystander_errors": b["error_count"],
        "connections": total,
        "rate": total / max(r["seconds"] for r in made),
        "connect_failed": sum(r["failed"] for r in made),
        "cpu_s": m.fwd_cpu,
        "other_load": m.other_load,
    }


def one_run(world: World, system: str, cfg: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of one system through one fresh forwarder."""
    n = cfg.mib * MiB
    rec: dict[str, Any] = {"system": system, "started": time.time()}

    def step(name: str, result: dict[str, Any]) -> None:
        rec[name] = result
        shown = {
            k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()
        }
        print(f"    {name:14s} {shown}", flush=True)

    fwd = SYSTEMS[system](world)
    try:
        rec["pid"] = fwd.pid
        step("first_byte", {"ms": fwd.first_byte_ms, **fwd.extra})
        for kind in ("L", "R"):
            if kind not in fwd_kinds(system, fwd):
                continue
            for way in ("up", "down"):
                step(f"{kind}_{way}", bulk(world, fwd, kind, way, n))
        step("rtt", rtt(world, fwd, cfg.rtt_count))
        # The busy transfer's idle twin, of the same size and just before it:
        # a shorter transfer is slower even when idle (its start weighs
        # more), and busy / idle must not count that as the busy caller's.
        busy_n = cfg.busy_mib * MiB
        step("idle_L_up", bulk(world, fwd, "L", "up", busy_n))
        step("busy_L_up", bulk(world, fwd, "L", "up", busy_n, busy=True))
        step("busy_rtt", rtt(world, fwd, cfg.rtt_count, busy=True))
        for conns in cfg.conns:
            step(f"conc_{conns}", conc(world, fwd, conns, cfg.conn_kib * 1024))
        if cfg.churn_seconds > 0:
            step("churn", churn(world, fwd, cfg.churn_seconds))
        if cfg.burst_seconds > 0:
            step("burst", burst(world, fwd, cfg))
    finally:
        fwd.close()
    return rec


def fwd_kinds(system: str, fwd: Running) -> set[str]:
    return {"L", "R"} if "rsink" in fwd.ports else {"L"}


# -- the run as a whole -------------------------------------------------------------


def machine() -> dict[str, Any]:
    def version(module: str) -> str | None:
        try:
            return metadata.version(module)
        except metadata.PackageNotFoundError:
            return None

    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    git = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "openssh": ssh,
        "nbtunnel": version("nbtunnel"),
        "nbtunnel_git": git,
        "paramiko": version("paramiko"),
        "cryptography": version("cryptography"),
        "sshtunnel": version("sshtunnel"),
        "asyncssh": version("asyncssh"),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


@contextlib.contextmanager
def world_up() -> Iterator[World]:
    sweep_stale()
    raise_nofile_limit()
    with (
        start_rig() as rig,
        start_targets(None) as here,
        lsink(rig.sshd.ns_argv) as there_port,
        lsink(list) as here_port,
    ):
        yield World(rig, here, there_port, here_port)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # run every finally: block on the way out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--mib", type=int, default=512, help="bulk transfer size")
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--rtt-count", type=int, default=5000)
    p.add_argument(
        "--busy-mib",
        type=int,
        default=256,
        help="upload size while the caller is busy (GIL-bound ones crawl then)",
    )
    p.add_argument("--conns", default="200,1000", help="connection counts at once")
    p.add_argument("--conn-kib", type=int, default=1024, help="echoed per connection")
    p.add_argument(
        "--churn-seconds", type=float, default=5.0, help="0: no connections/s row"
    )
    p.add_argument("--burst-seconds", type=float, default=10.0, help="0: no burst row")
    p.add_argument(
        "--burst-rate", type=float, default=800.0, help="burst connections a second"
    )
    p.add_argument(
        "--quick", action="store_true", help="small sizes, 1 run (a smoke test)"
    )
    p.add_argument("--json", type=Path, default=JSON_OUT)
    p.add_argument("--png", type=Path, default=PNG_OUT)
    cfg = p.parse_args(argv)
    if cfg.quick:
        cfg.runs, cfg.mib, cfg.busy_mib, cfg.rtt_count = 1, 16, 16, 200
        cfg.conns, cfg.conn_kib = "20,100", 64
        cfg.burst_seconds, cfg.burst_rate = 2.0, 400.0
        cfg.churn_seconds = 1.0
    cfg.conns = [int(x) for x in cfg.conns.split(",") if x]
    return cfg


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    wanted = [s.strip() for s in cfg.systems.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SYSTEMS]
    if unknown:
        raise SystemExit(f"unknown systems {unknown}; choose from {', '.join(SYSTEMS)}")
    notes = {s: why for s in wanted if (why := missing(s))}
    for s, why in notes.items():
        print(f"skipping {s}: {why}")
    systems = [s for s in wanted if s not in notes]
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)

    info = machine()
    print(
        f"{info['cpu']}, {info['cores']} cores, Linux {info['kernel']}, {info['openssh']}"
    )
    # nbtunnel's modules compiled, as pip leaves an installed package: the
    # engine process started for each run would otherwise compile them
    # again wherever PYTHONDONTWRITEBYTECODE is set (this machine sets it).
    compileall.compile_dir(ROOT / "nbtunnel", quiet=1)
    # The expected digests once, before anything is timed.
    expected_sha256(cfg.mib * MiB)
    expected_sha256(cfg.busy_mib * MiB)
    records: list[dict[str, Any]] = []
    t_start = time.time()
    try:
        with world_up() as world:
            print(
                f"rig: {world.rig.mode}; systems: {', '.join(systems)}; runs: {cfg.runs}"
            )
            for run in range(cfg.runs):
                for system in systems:
                    print(f"run {run + 1}/{cfg.runs} {system}", flush=True)
                    try:
                        rec = one_run(world, system, cfg)
                    except Exception as exc:  # noqa: BLE001 - one failed run is a result
                        traceback.print_exc()
                        rec = {"system": system, "error": repr(exc)}
                    rec["run"] = run + 1
                    records.append(rec)
    finally:
        kill_clients()
    summary = report.summarize(records, systems, cfg)
    goals = report.targets(summary, cfg) if "nbtunnel" in systems else []
    print()
    print(report.table(summary, systems, cfg))
    if goals:
        print("\nnbtunnel's targets, from this run:")
        print(report.targets_text(goals))
    doc = {
        "machine": info,
        "config": {
            "runs": cfg.runs,
            "mib": cfg.mib,
            "rtt_count": cfg.rtt_count,
            "rtt_seconds_at_most": RTT_SECONDS,
            "busy_mib": cfg.busy_mib,
            "conns": cfg.conns,
            "conn_kib": cfg.conn_kib,
            "burst_seconds": cfg.burst_seconds,
            "churn_seconds": cfg.churn_seconds,
            "burst_rate": cfg.burst_rate,
            "systems": systems,
            "skipped": notes,
            "ciphers": {s: CIPHERS[s] for s in systems},
            "rig_mode": world.rig.mode,
            "started": t_start,
            "seconds": time.time() - t_start,
        },
        "summary": summary,
        "targets": goals,
        "runs": records,
    }
    cfg.json.parent.mkdir(parents=True, exist_ok=True)
    cfg.json.write_text(json.dumps(doc, indent=1) + "\n")
    print(
        f"\nwrote {cfg.json.relative_to(ROOT) if cfg.json.is_relative_to(ROOT) else cfg.json}"
    )
    try:
        report.chart(summary, systems, cfg, info, cfg.png)
        print(f"wrote {cfg.png}")
    except ImportError as exc:
        print(f"no chart: {exc} (pip install -e '.[bench]')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
