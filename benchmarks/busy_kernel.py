"""Does a %tunnel forward keep its speed while a notebook cell computes?

A real IPython kernel (jupyter_client) loads nbtunnel and opens
``%tunnel -L 0:sink`` through the rig's real sshd.  From outside the kernel,
a client process uploads N MiB through the forward (sha256 verified) while
the kernel is idle, or while a cell spins a pure-Python loop.  Conditions
alternate run by run; the report gives medians and the busy/idle ratio.

    python -m benchmarks.busy_kernel [--mib 256] [--runs 3]

Run from the repository root, with the package's test extras installed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jupyter_client.manager import KernelManager  # noqa: E402
from tests.rig.rig import start_rig  # noqa: E402

from benchmarks.busy_caller import one_run  # noqa: E402

SPIN = """
import os
x = 0
while not os.path.exists({flag!r}):
    for i in range(20_000):
        x += i * i % 7
"""


def _value(kc, code: str) -> str:  # type: ignore[no-untyped-def]
    texts: list[str] = []

    def hook(msg: dict) -> None:  # type: ignore[type-arg]
        if msg["msg_type"] == "stream":
            texts.append(msg["content"]["text"])

    reply = kc.execute_interactive(code, timeout=60, output_hook=hook)
    if reply["content"]["status"] != "ok":
        raise SystemExit(f"kernel cell failed: {reply['content']}")
    return "".join(texts).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    nbytes = args.mib * 1024 * 1024
    results: dict[str, list[float]] = {"idle": [], "busy": []}
    with start_rig() as rig, tempfile.TemporaryDirectory() as tmp:
        km = KernelManager(kernel_name="python3")
        km.start_kernel(cwd=tmp, env={**os.environ, "PYTHONPATH": str(ROOT)})
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            line = rig.sshd.line("-L", f"0:{rig.targets.host}:{rig.targets.sink}")
            _value(kc, "%load_ext nbtunnel")
            port = int(
                _value(kc, f"t = %tunnel {line}\nprint(t.forwards[0].listen_port)")
            )
            for run in range(args.runs):
                order = ["idle", "busy"] if run % 2 == 0 else ["busy", "idle"]
                for label in order:
                    flag = Path(tmp) / f"stop-{run}-{label}"
                    if label == "busy":
                        kc.execute(SPIN.format(flag=str(flag)))
                        time.sleep(0.5)  # the cell is computing by now
                    r = one_run(port, nbytes, busy=False)
                    if label == "busy":
                        flag.touch()
                        kc.get_shell_msg(timeout=60)  # the spinning cell's reply
                    results[label].append(r["mb_s"])
                    print(
                        f"run {run + 1} kernel {label}: {r['mb_s']:7.1f} MB/s",
                        flush=True,
                    )
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=False)
    idle = statistics.median(results["idle"])
    busy = statistics.median(results["busy"])
    print(
        f"\nupload through %tunnel -L, sha256 verified, {args.mib} MiB, medians of {args.runs}:"
    )
    print(
        f"idle {idle:.1f} MB/s, cell spinning {busy:.1f} MB/s, busy/idle {busy / idle:.2f}"
    )
    print(f"rig mode: {rig.mode}, cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
