"""Starting and stopping the targets process (tests/rig/targets.py).

Kept apart from targets.py so that importing tests.rig does not import the
server module, which `python -m tests.rig.targets` would then run twice.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from . import procs
from .netns import Netns, make_tempdir

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 10.0


@dataclass
class Targets:
    """The running targets process. host is where the SSH *server* reaches them."""

    host: str
    host6: str | None
    echo: int
    echo6: int | None
    sink: int
    source: int
    http: int
    refused_port: int
    unix_echo: Path
    pid: int
    netns: str | None
    workdir: Path
    log: Path
    # The tally service (tests/rig/targets.py): counts what it was sent.
    tally: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _owns_workdir: bool = field(default=True, repr=False)

    def stop(self) -> None:
        if self._proc is not None:
            _stop(self._proc)

    def close(self) -> None:
        self.stop()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Targets:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None:
        proc.stdin.close()  # the polite way: it exits on EOF
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        procs.stop_tree(proc)
    if proc.stdout is not None:
        proc.stdout.close()


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"targets printed no ports within {timeout:.0f} s")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            data = os.read(fd, 4096)
            if not data:
                raise RuntimeError("targets exited before printing its ports")
            buf += data
    return buf


def start_targets(
    netns: Netns | None = None, *, workdir: Path | None = None
) -> Targets:
    """Start the targets process (inside netns if given); return once it listens."""
    owns = workdir is None
    wd = make_tempdir("targets") if workdir is None else workdir
    wd.mkdir(parents=True, exist_ok=True)
    log = wd / "targets.log"
    unix_path = wd / "unix_echo.sock"
    argv = [
        sys.executable,
        "-m",
        "tests.rig.targets",
        "--unix",
        str(unix_path),
        "--dir",
        str(wd),
    ]
    if netns is not None:
        argv = netns.exec_argv(argv)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    proc: subprocess.Popen[bytes] | None = None
    try:
        with open(log, "ab") as logf:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=logf,
                env=env,
                cwd=str(REPO_ROOT),
            )
        (wd / "targets.pid").write_text(f"{proc.pid}\n")
        try:
            info = json.loads(_read_line(proc, START_TIMEOUT))
        except (TimeoutError, RuntimeError, ValueError) as e:
            raise RuntimeError(f"{e}; targets log:\n{log.read_text()[-3000:]}") from e
        return Targets(
            host="127.0.0.1",
            host6="::1" if info["echo6"] else None,
            echo=info["echo"],
            echo6=info["echo6"],
            sink=info["sink"],
            source=info["source"],
            http=info["http"],
            refused_port=info["refused_port"],
            unix_echo=Path(info["unix_echo"]),
            pid=proc.pid,
            netns=netns.name if netns else None,
            workdir=wd,
            log=log,
            tally=info["tally"],
            _proc=proc,
            _owns_workdir=owns,
        )
    except BaseException:
        if proc is not None:
            _stop(proc)
        if owns:
            shutil.rmtree(wd, ignore_errors=True)
        raise
