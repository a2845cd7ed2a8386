"""Profile nbtunnel's forwarding for one workload of benchmarks/compare.py.

    python -m benchmarks.profile_engine WORKLOAD [--mib 256] [--top 40] [--clock cpu|wall]

WORKLOAD: L_up, L_down, R_up, R_down, rtt or conc, or several of them
separated by commas, run one after the other over the same tunnel.  The engine runs inline
here (the same Engine class as the engine process, in this process's
threads) under yappi, which sees every thread; the client is a process of
its own, as in compare.py, so this process does nothing but forward.
Prints the functions by own ("tsub") time and by inclusive time, and the
time per thread.  Needs yappi (pip install yappi).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import nbtunnel  # noqa: E402

try:
    import yappi
except ImportError:
    raise SystemExit("profile_engine needs yappi: pip install yappi") from None

from benchmarks.compare import MiB, client, finish, world_up  # noqa: E402
from benchmarks.compare_systems import World  # noqa: E402


def open_tunnel(world: World) -> tuple[nbtunnel.Manager, dict[str, int]]:
    tokens, remote = world.nbtunnel_tokens()
    manager = nbtunnel.Manager(engine="inline")
    tunnel = manager.open(world.rig.sshd.line(*tokens))
    names = ["echo", "sink", "source"]
    ports = {
        n: f.listen_port or 0 for n, f in zip(names, tunnel.forwards, strict=False)
    }
    ports.update({name: sport for name, sport, _, _ in remote})
    return manager, ports


def args_for(workload: str, ports: dict[str, int], n: int) -> tuple[list[object], bool]:
    if workload in ("L_up", "R_up"):
        port = ports["sink" if workload[0] == "L" else "rsink"]
        return ["upload", "127.0.0.1", port, n, 120], workload[0] == "R"
    if workload in ("L_down", "R_down"):
        port = ports["source" if workload[0] == "L" else "rsource"]
        return ["download", "127.0.0.1", port, n, 120], workload[0] == "R"
    if workload == "rtt":
        return ["rtt", "127.0.0.1", ports["echo"], 5000, 64, 60], False
    if workload == "conc":
        return ["conc", "127.0.0.1", ports["echo"], 1000, 1024 * 1024, 300], False
    raise SystemExit(f"unknown workload {workload}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workload")
    p.add_argument("--mib", type=int, default=256)
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--clock", default="cpu")
    p.add_argument("--no-profile", action="store_true", help="time it only")
    a = p.parse_args()
    with world_up() as world:
        manager, ports = open_tunnel(world)
        try:
            yappi.set_clock_type(a.clock)
            if not a.no_profile:
                yappi.start(builtins=True, profile_threads=True)
            for workload in a.workload.split(","):
                argv, on_server = args_for(workload, ports, a.mib * MiB)
                t0, c0 = time.perf_counter(), time.process_time()
                result = finish(client(world, argv, on_server=on_server), 900)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                print(f"{workload}: {result}")
                print(f"wall {wall:.2f} s, this process's CPU {cpu:.2f} s", flush=True)
            yappi.stop()
        finally:
            manager.close()
    if a.no_profile:
        return
    stats = yappi.get_func_stats()
    for key in ("tsub", "ttot"):
        print(f"\n-- by {key} --")
        stats.sort(key, "desc")
        for s in list(stats)[: a.top]:
            where = f"{Path(s.module).name}:{s.lineno}"
            print(f"{s.tsub:8.3f} {s.ttot:8.3f} {s.ncall:9d}  {s.name}  ({where})")
    print("\n-- threads --")
    for t in sorted(yappi.get_thread_stats(), key=lambda t: -t.ttot)[:12]:
        print(f"{t.ttot:8.3f}  {t.name} ({t.sched_count} scheduled)")


if __name__ == "__main__":
    main()
