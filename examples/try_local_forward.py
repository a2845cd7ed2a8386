"""Try nbtunnel on this machine, with no SSH server of your own.

Starts a throwaway OpenSSH sshd (its own keys, config and port) and a small
web server that only that sshd can reach (in a network namespace when run
as root; on loopback otherwise), then does what a user does:

    t = nbtunnel.open("-L 0:localhost:<web port> ... user@<sshd>")

fetches a page and 10 MB through the forward, shows the status table, and
stops everything.  Run from the repository root:

    .venv/bin/python examples/try_local_forward.py
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nbtunnel  # noqa: E402
from nbtunnel.client import display  # noqa: E402
from tests.rig import clients  # noqa: E402
from tests.rig.data import pattern  # noqa: E402
from tests.rig.rig import start_rig  # noqa: E402


def main() -> None:
    with start_rig() as rig:
        where = (
            "in a network namespace: only the SSH server reaches the web server"
            if rig.netns
            else "on loopback (run as root to isolate it in a network namespace)"
        )
        print(
            f"started a private sshd at {rig.sshd.host} port {rig.sshd.port}, {where}"
        )
        line = rig.sshd.line("-L", f"0:localhost:{rig.targets.http}")
        print(f"\n>>> t = nbtunnel.open({line!r})")
        started = time.perf_counter()
        with nbtunnel.open(line) as t:
            ready = time.perf_counter() - started
            fwd = t.forwards[0]
            print(repr(t))
            engine = nbtunnel.default_manager().engine_pid
            print(f"(ready in {ready * 1000:.0f} ms, engine process pid {engine})")

            status, body = clients.http_get("127.0.0.1", fwd.listen_port, "/")
            print(
                f"\nGET http://127.0.0.1:{fwd.listen_port}/ -> {status} {body.decode().strip()!r}"
            )

            n = 10_000_000
            started = time.perf_counter()
            status, body = clients.http_get("127.0.0.1", fwd.listen_port, f"/bytes/{n}")
            seconds = time.perf_counter() - started
            same = hashlib.sha256(body).digest() == hashlib.sha256(pattern(n)).digest()
            print(
                f"GET /bytes/{n} -> {status}, {len(body)} bytes in {seconds:.2f} s, "
                f"sha256 {'matches' if same else 'DIFFERS'}"
            )
            print("\n" + display.text_table(nbtunnel.default_manager().snapshots()))
        closed = clients.port_is_closed("127.0.0.1", fwd.listen_port)
        print(
            f"\nstopped: port {fwd.listen_port} {'is closed' if closed else 'STILL OPEN'}"
        )
        nbtunnel.default_manager().close()
        if not (same and closed):
            sys.exit(1)


if __name__ == "__main__":
    main()
