"""A real PostgreSQL of the rig's own, where only the SSH server reaches it.

initdb makes a throwaway cluster in a temp dir of the rig's; postgres runs
inside the rig's namespace (netns mode) listening on that namespace's
127.0.0.1 and on a unix socket in the same temp dir, so a client of this
machine reaches it only through a forward.  The system's own cluster, if
any, is never touched: own data directory, own socket directory, and in
loopback mode a port of its own.

PostgreSQL refuses to run as root, so as root the cluster belongs to the
``postgres`` account the Debian package makes (``nobody`` without it), and
the server is started through ``setpriv`` after ``ip netns exec``: the
namespace needs root, the server must not have it.  As anyone else it runs
as that user, in loopback mode.

The database ``sales`` holds the table ``orders`` with ORDERS, owned by the
role ``analyst``, which logs in over TCP with PASSWORD (scram-sha-256);
connections on the unix socket are trusted, as Debian's default is for
local ones.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from . import procs
from .netns import Netns, make_tempdir
from .sshd import free_port

if TYPE_CHECKING:  # POSIX-only; imported where used so that the rig loads everywhere
    import pwd

START_TIMEOUT = 30.0
DATABASE = "sales"
USER = "analyst"
# Every character a URL must percent-encode in a password, so that a URL
# that loses or mangles it cannot log in.
PASSWORD = "p@ss:w/rd?#%"
ORDERS = (
    (1, "bolts", "12.50"),
    (2, "nuts and washers", "3.75"),
    (3, "grüße, ünïcode", "1000.00"),
)
# What psql -A -t -F ',' prints for "select * from orders order by id".
ORDERS_CSV = "".join(f"{i},{item},{amount}\n" for i, item, amount in ORDERS)
NETNS_PORT = 5432  # the namespace is the rig's own: the standard port is free there


@functools.lru_cache(maxsize=1)
def bindir() -> Path | None:
    """The newest /usr/lib/postgresql/*/bin with initdb and postgres, any version."""
    found = []
    for d in Path("/usr/lib/postgresql").glob("*/bin"):
        version = d.parent.name
        if version.isdigit() and (d / "initdb").exists() and (d / "postgres").exists():
            found.append((int(version), d))
    return max(found)[1] if found else None


def missing() -> str | None:
    """Why no cluster can be started here, or None."""
    if bindir() is None:
        return (
            "needs PostgreSQL's server binaries (/usr/lib/postgresql/*/bin/postgres: "
            "apt-get install postgresql)"
        )
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "needs setpriv (util-linux) to run postgres as a user other than root"
    return None


def _account() -> pwd.struct_passwd:
    """Whom the server runs as: never root, which postgres refuses."""
    import pwd

    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("no 'postgres' or 'nobody' account to run postgres as")


@dataclass
class Postgres:
    """A running cluster; ``host``/``port`` and ``socket`` are as the server sees them."""

    host: str
    port: int
    socket_dir: Path
    pid: int
    workdir: Path
    log: Path
    bindir: Path
    netns: str | None
    _ns: Netns | None = field(default=None, repr=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def socket(self) -> Path:
        """The server's unix socket, named as libpq looks for it."""
        return self.socket_dir / f".s.PGSQL.{self.port}"

    def psql(
        self, sql: str, *, database: str = "postgres", user: str = "postgres"
    ) -> str:
        """Run SQL on the server's own side (its socket, trusted); psql's output."""
        argv = [
            str(self.bindir / "psql"),
            "-X",
            "-w",
            "-v",
            "ON_ERROR_STOP=1",
            "-A",
            "-t",
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-U",
            user,
            "-d",
            database,
            "-c",
            sql,
        ]
        argv = self._ns.exec_argv(argv) if self._ns is not None else argv
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed: {r.stderr}")
        return r.stdout

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no postgres log)"

    def stop(self) -> None:
        """Fast shutdown of the postmaster by its PID; it ends its own backends."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            procs.stop_tree(proc, hard=True)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Postgres:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _as_account(argv: Sequence[str], account: pwd.struct_passwd) -> list[str]:
    if os.geteuid() != 0:
        return list(argv)
    return [
        "setpriv",
        f"--reuid={account.pw_uid}",
        f"--regid={account.pw_gid}",
        "--clear-groups",
        "--",
        *argv,
    ]


def _run(argv: Sequence[str], env: dict[str, str]) -> None:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({r.returncode}): {r.stderr[-3000:]}")


def start_postgres(netns: Netns | None) -> Postgres:
    """initdb, start postgres (inside netns if given), create the sales database."""
    reason = missing()
    if reason is not None:
        raise RuntimeError(reason)
    bin_ = bindir()
    assert bin_ is not None
    account = _account()
    wd = make_tempdir("postgres")
    try:
        return _start(netns, bin_, account, wd)
    except BaseException:
        shutil.rmtree(wd, ignore_errors=True)
        raise


def _start(
    netns: Netns | None, bin_: Path, account: pwd.struct_passwd, wd: Path
) -> Postgres:
    # The server's user must reach its data and socket directories below
    # our private temp dir.
    wd.chmod(0o755)
    data, sockets = wd / "data", wd / "sockets"
    for d in (data, sockets):
        d.mkdir()
        os.chown(d, account.pw_uid, account.pw_gid)
    data.chmod(0o700)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
    _run(
        _as_account(
            [
                str(bin_ / "initdb"),
                "--no-sync",
                "--username=postgres",
                "--encoding=UTF8",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-D",
                str(data),
            ],
            account,
        ),
        env,
    )
    port = NETNS_PORT if netns is not None else free_port()
    argv = _as_account(
        [
            str(bin_ / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(sockets),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "shared_buffers=16MB",
            "-c",
            "max_connections=20",
            "-c",
            "dynamic_shared_memory_type=mmap",
        ],
        account,
    )
    if netns is not None:
        argv = netns.exec_argv(argv)
    log = wd / "postgres.log"
    with open(log, "ab") as logf:
        # ip netns exec and setpriv both exec: the PID is the postmaster's.
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env
        )
    # For sweep_stale(): the postmaster's command line names this directory.
    (wd / "postgres.pid").write_text(f"{proc.pid}\n")
    pg = Postgres(
        host="127.0.0.1",
        port=port,
        socket_dir=sockets,
        pid=proc.pid,
        workdir=wd,
        log=log,
        bindir=bin_,
        netns=netns.name if netns else None,
        _ns=netns,
        _proc=proc,
    )
    try:
        _wait_ready(pg, proc)
        _fill(pg)
    except BaseException:
        pg.stop()
        raise
    return pg


def _wait_ready(pg: Postgres, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"postgres exited with {proc.returncode}:\n{pg.log_tail()}"
            )
        listening = (pg.host, pg.port) in procs.listening_tcp(pg.pid)
        if listening and pg.socket.exists():
            try:
                pg.psql("select 1")
                return
            except RuntimeError as exc:
                # Listening comes before accepting: "starting up" is normal.
                if "starting up" not in str(exc) or time.monotonic() > deadline:
                    raise
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"postgres did not listen within {START_TIMEOUT:.0f} s:\n{pg.log_tail()}"
            )
        time.sleep(0.05)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _fill(pg: Postgres) -> None:
    pg.psql(f"create role {USER} login password {_literal(PASSWORD)}")
    pg.psql(
        f"create database {DATABASE} owner {USER} encoding 'UTF8' template template0"
    )
    rows = ", ".join(f"({i}, {_literal(item)}, {amount})" for i, item, amount in ORDERS)
    pg.psql(
        "create table orders (id integer primary key, item text not null, "
        f"amount numeric(10, 2) not null); insert into orders values {rows}",
        database=DATABASE,
        user=USER,
    )
