"""The real OpenSSH client as a reference forwarder (rig self-tests, benchmarks)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO

from . import procs
from .sshd import SshServer, free_port

SSH = "/usr/bin/ssh"


@dataclass
class OpenSshForward:
    """A running `ssh -N -L ...`; ports[i] is the local port of targets[i]."""

    proc: subprocess.Popen[bytes]
    ports: list[int]
    _stderr: IO[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()


@contextlib.contextmanager
def openssh_forward(
    server: SshServer,
    targets: Sequence[str],
    *,
    host: str | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 10.0,
) -> Iterator[OpenSshForward]:
    """Run /usr/bin/ssh -N with one `-L 127.0.0.1:<free>:<target>` per target.

    targets are -L right-hand sides as ssh spells them: "127.0.0.1:7",
    "[::1]:7" or "/path/to/unix.sock". host: address to dial instead of
    server.host (e.g. server.host6). Waits until every local port listens,
    stops the client by its PID on exit.
    """
    destination = f"{server.user}@{host or server.host}"
    last_err = ""
    for _attempt in range(5):
        ports = [free_port() for _ in targets]
        argv = [
            SSH,
            "-F",
            "/dev/null",  # hermetic: no ~/.ssh/config or /etc/ssh/ssh_config
            "-N",
            "-o",
            "BatchMode=yes",
            "-o",
            "ExitOnForwardFailure=yes",
            *server.args(),
            *extra_args,
        ]
        for port, target in zip(ports, targets, strict=True):
            argv += ["-L", f"127.0.0.1:{port}:{target}"]
        argv.append(destination)
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=err)
            try:
                expected = {("127.0.0.1", p) for p in ports}
                deadline = time.monotonic() + timeout
                while proc.poll() is None and not expected <= procs.listening_tcp(
                    proc.pid
                ):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"ssh did not listen on {ports}")
                    time.sleep(0.01)
                if proc.poll() is None:
                    yield OpenSshForward(proc, ports, err)
                    return
            finally:
                _stop(proc)
            err.seek(0)
            last_err = err.read().decode(errors="replace")
        # Someone took a free port between our probe and ssh's bind: try again.
        if "Address already in use" not in last_err:
            break
    raise RuntimeError(
        f"ssh forward failed: {last_err.strip()}\nsshd log:\n{server.log_tail()}"
    )
