"""The rig's own network namespace, the choice of mode, and stale-state sweeping.

Names carry the owning process's PID, so a later run can tell leftovers of a
dead run (sweep them) from a live concurrent run (leave it alone):

- namespace  ``nbt-<pid>-<n>``
- veth ends  ``nbt<pid>h<n>`` (root namespace) and ``nbt<pid>p<n>`` (inside)
- temp dirs  ``<tmp>/nbt-rig-<pid>-*``
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

from . import procs

IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "ip"
MODE_ENV = "NBTUNNEL_RIG_MODE"
TMP_PREFIX = "nbt-rig-"
NETNS_SKIP_REASON = (
    "needs root and `ip netns` to put sshd and its targets where only the server "
    "reaches them"
)

Mode = Literal["netns", "loopback"]

_NS_RE = re.compile(r"^nbt-(\d+)-(\d+)$")
_LINK_RE = re.compile(r"^nbt(\d+)[hp](\d+)$")
_TMP_RE = re.compile(rf"^{TMP_PREFIX}(\d+)-")
# Slot X: 10.177.X.0/30 and fd77:X::/64 (X written in decimal digits in both)
_SLOTS = 256
_counter = itertools.count(1)  # 0 is the mode probe's


def _ip(*args: str, stdin: str | None = None, check: bool = True) -> str:
    r = subprocess.run(
        [IP, *args], input=stdin, capture_output=True, text=True, timeout=30
    )
    if check and r.returncode != 0:
        raise RuntimeError(
            f"`ip {' '.join(args)}` failed ({r.returncode}): {r.stderr.strip()}"
            + (f"\ninput:\n{stdin}" if stdin else "")
        )
    return r.stdout


def pid_alive(pid: int) -> bool:
    return procs.is_alive(pid)


@dataclass(frozen=True)
class ModeInfo:
    mode: Mode
    reason: str  # why loopback was chosen; "" in netns mode


@functools.lru_cache(maxsize=1)
def detect_mode() -> ModeInfo:
    """netns when root and `ip netns` works, else loopback; NBTUNNEL_RIG_MODE overrides.

    NBTUNNEL_RIG_MODE=loopback forces loopback (so root can test it too),
    =netns demands netns and raises if it is unavailable, unset/auto detects.
    """
    wanted = os.environ.get(MODE_ENV, "auto").strip().lower() or "auto"
    if wanted not in ("auto", "netns", "loopback"):
        raise ValueError(f"{MODE_ENV}={wanted!r}: expected netns, loopback or auto")
    if wanted == "loopback":
        return ModeInfo("loopback", f"forced by {MODE_ENV}=loopback")
    reason = _netns_unavailable_reason()
    if reason is None:
        return ModeInfo("netns", "")
    if wanted == "netns":
        raise RuntimeError(f"{MODE_ENV}=netns but {reason}")
    return ModeInfo("loopback", reason)


def _netns_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "not root"
    if shutil.which(IP) is None:
        return "`ip` (iproute2) not found"
    probe = f"nbt-{os.getpid()}-0"
    try:
        _ip("netns", "add", probe)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        return f"`ip netns add` failed: {e}"
    _ip("netns", "del", probe, check=False)
    return None


@contextlib.contextmanager
def _alloc_lock() -> Iterator[None]:
    # Serialises subnet choice between concurrent rigs (other engineers' runs).
    import fcntl  # POSIX-only: imported here so that the rig loads everywhere

    lockdir = Path("/run/lock") if os.path.isdir("/run/lock") else Path("/tmp")
    with open(lockdir / "nbtunnel-rig.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _used_slots() -> set[int]:
    used: set[int] = set()
    for m in re.finditer(r"inet 10\.177\.(\d+)\.\d+/", _ip("-o", "-4", "addr")):
        used.add(int(m.group(1)))
    return used


@dataclass
class Netns:
    """A private network namespace joined to the root one by a veth pair.

    Addresses: host end 10.177.X.1/30 and fd77:X::1/64, namespace end
    10.177.X.2 and fd77:X::2, X a free slot picked from the owner's PID. Only
    these two ends use that /30, so nothing but the test process can reach
    into the namespace, and inside it only sshd and the targets live. Use as
    a context manager or call create()/destroy().
    """

    owner: int = field(default_factory=os.getpid)
    n: int = field(default_factory=lambda: next(_counter))
    slot: int = -1
    created: bool = False
    _next_port: int = 2222

    @property
    def name(self) -> str:
        return f"nbt-{self.owner}-{self.n}"

    @property
    def host_if(self) -> str:
        return f"nbt{self.owner}h{self.n}"

    @property
    def ns_if(self) -> str:
        return f"nbt{self.owner}p{self.n}"

    @property
    def host_addr(self) -> str:
        return f"10.177.{self.slot}.1"

    @property
    def ns_addr(self) -> str:
        return f"10.177.{self.slot}.2"

    @property
    def silent_addr(self) -> str:
        """An address routed into the veth that nobody owns: connects time out.

        For connect-timeout tests, which must not send packets anywhere else.
        """
        return f"10.177.{self.slot}.5"

    @property
    def host_addr6(self) -> str:
        # Canonical form ("fd77::1" for slot 0), as the kernel reports it back.
        return str(ipaddress.ip_address(f"fd77:{self.slot}::1"))

    @property
    def ns_addr6(self) -> str:
        return str(ipaddress.ip_address(f"fd77:{self.slot}::2"))

    def next_port(self) -> int:
        """A port for one more server in the namespace.

        Never reused, so a restarted test never meets a TIME_WAIT of an earlier one.
        """
        port = self._next_port
        self._next_port += 1
        return port

    def create(self) -> Netns:
        if len(self.host_if) > 15:  # IFNAMSIZ - 1
            raise ValueError(f"interface name {self.host_if!r} is too long")
        try:
            with _alloc_lock():
                used = _used_slots()
                start = (self.owner + self.n) % _SLOTS
                free = [
                    s
                    for s in ((start + i) % _SLOTS for i in range(_SLOTS))
                    if s not in used
                ]
                if not free:
                    raise RuntimeError("all 256 rig subnets 10.177.X.0/30 in use")
                self.slot = free[0]
                _ip("netns", "add", self.name)
                self.created = True
                # Addresses are added under the lock so the next rig sees them.
                _ip(
                    "-batch",
                    "-",
                    stdin="\n".join(
                        [
                            f"link add {self.host_if} type veth peer name {self.ns_if}"
                            f" netns {self.name}",
                            f"addr add {self.host_addr}/30 dev {self.host_if}",
                            # nodad: usable at once instead of ~1 s of DAD
                            f"addr add {self.host_addr6}/64 dev {self.host_if} nodad",
                            f"link set {self.host_if} up",
                            f"route add {self.silent_addr}/32 dev {self.host_if}",
                        ]
                    )
                    + "\n",
                )
            _ip(
                "-n",
                self.name,
                "-batch",
                "-",
                stdin="\n".join(
                    [
                        "link set lo up",
                        f"addr add {self.ns_addr}/30 dev {self.ns_if}",
                        f"addr add {self.ns_addr6}/64 dev {self.ns_if} nodad",
                        f"link set {self.ns_if} up",
                    ]
                )
                + "\n",
            )
        except BaseException:
            self.destroy()
            raise
        return self

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """argv wrapped to run inside the namespace.

        `ip netns exec` execs the command, so the PID stays that of the command.
        """
        return [IP, "netns", "exec", self.name, *argv]

    @contextlib.contextmanager
    def cut(self) -> Iterator[None]:
        """The link between this machine and the namespace down, for the block.

        Packets are dropped, not refused: to either end the other has gone
        silent, as when a laptop leaves the Wi-Fi.  Addresses and the silent
        route come back with the link.
        """
        # Else IPv6 addresses go with the link (keep_addr_on_down is 0).
        keep = "/proc/sys/net/ipv6/conf/{}/keep_addr_on_down"
        Path(keep.format(self.host_if)).write_text("1\n")
        subprocess.run(
            self.exec_argv(["sh", "-c", f"echo 1 > {keep.format(self.ns_if)}"]),
            check=True,
            capture_output=True,
            timeout=30,
        )
        _ip("link", "set", self.host_if, "down")
        try:
            yield
        finally:
            _ip("link", "set", self.host_if, "up")
            # A link going down takes its routes along; the prefix routes
            # come back with it, this one does not.
            _ip("route", "replace", f"{self.silent_addr}/32", "dev", self.host_if)

    def pids(self) -> list[int]:
        """PIDs of the processes inside the namespace."""
        return _ns_pids(self.name)

    def destroy(self) -> None:
        """Remove the namespace and the veth; idempotent."""
        if not self.created:
            return
        # Normally empty: the servers are stopped first. Anything still inside
        # was started in this namespace of ours, so it is ours to end.
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _ip("link", "del", self.host_if, check=False)
        _ip("netns", "del", self.name, check=False)
        self.created = False

    def __enter__(self) -> Netns:
        return self.create() if not self.created else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()


def rig_namespaces(owner: int | None = None) -> list[str]:
    """Namespaces named like the rig's (of one owner PID if given)."""
    names = []
    for line in _ip("netns", "list", check=False).splitlines():
        name = line.split()[0] if line.strip() else ""
        m = _NS_RE.match(name)
        if m and (owner is None or int(m.group(1)) == owner):
            names.append(name)
    return names


def rig_links(owner: int | None = None) -> list[str]:
    """Root-namespace links named like the rig's veths (of one owner PID if given)."""
    names = []
    for m in re.finditer(r"^\d+: ([^:@\s]+)", _ip("-o", "link", check=False), re.M):
        lm = _LINK_RE.match(m.group(1))
        if lm and (owner is None or int(lm.group(1)) == owner):
            names.append(m.group(1))
    return names


def make_tempdir(kind: str) -> Path:
    """A temp dir named so that sweep_stale() can tell whose it is."""
    return Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-{kind}-"))


def _kill_recorded(d: Path) -> None:
    # A dead run's servers: only PIDs it recorded, and only if the process
    # still names this directory on its command line (guards against PID reuse).
    for pidfile in d.glob("*.pid"):
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if procs.is_alive(pid) and str(d) in procs.cmdline(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def sweep_stale() -> list[str]:
    """Remove namespaces, veths and temp dirs left by rig runs whose process is gone.

    Returns what was removed. Runs of live processes (concurrent pytest
    sessions) are left alone.
    """
    removed: list[str] = []
    can_net = os.geteuid() == 0 and shutil.which(IP) is not None
    if can_net:
        for name in rig_namespaces():
            owner = int(_NS_RE.match(name).group(1))  # type: ignore[union-attr]
            if owner == os.getpid() or pid_alive(owner):
                continue
            for pid in _ns_pids(name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _ip("netns", "del", name, check=False)
            removed.append(f"netns {name}")
        for link in rig_links():
            owner = int(_LINK_RE.match(link).group(1))  # type: ignore[union-attr]
            if owner == os.getpid() or pid_alive(owner):
                continue
            _ip("link", "del", link, check=False)
            removed.append(f"link {link}")
    tmp = Path(tempfile.gettempdir())
    for d in tmp.glob(f"{TMP_PREFIX}*"):
        m = _TMP_RE.match(d.name)
        if not m or not d.is_dir():
            continue
        owner = int(m.group(1))
        if owner == os.getpid() or pid_alive(owner):
            continue
        _kill_recorded(d)
        shutil.rmtree(d, ignore_errors=True)
        removed.append(f"dir {d}")
    return removed


def _ns_pids(name: str) -> list[int]:
    return [int(x) for x in _ip("netns", "pids", name, check=False).split()]
