"""A small cluster network: machines of their own on one bridge, for Dask.

A Dask worker is another machine, whose 127.0.0.1 is not the kernel's: here
each worker gets a network namespace of its own (its own loopback, so it
needs a forward of its own).  This machine (the root namespace, where the
test's kernel and the scheduler run), the rig's sshd namespace and every
worker have a leg on one bridge, which sits in a namespace of its own:

- the hub (a :class:`Netns`: its slot X reserves the addresses; its veth to
  this machine is not used) holds the bridge ``br0``;
- the bridge's subnet is 10.177.X.64/26: this machine .65, the sshd .66,
  workers .70 and up;
- a worker reaches the sshd at the sshd's usual address by a host route to
  .66, so the line the kernel opened works unchanged on every worker;
- the PostgreSQL of the rig listens on the sshd namespace's loopback: a
  worker reaches it only through SSH.

Every hop is on the bridge: nothing is routed through this machine, whose
settings stay as they were.  Namespaces are named as the rig's others
(``nbt-<pid>-<n>``), so sweep_stale() removes a dead run's.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass, field
from types import TracebackType

from . import netns as ns
from .netns import Netns

HUB_BRIDGE = "br0"


@dataclass
class Machine:
    """One worker's namespace: its own loopback, a leg on the bridge."""

    name: str
    address: str  # on the bridge

    def exec_argv(self, argv: list[str]) -> list[str]:
        return [ns.IP, "netns", "exec", self.name, *argv]

    def pids(self) -> list[int]:
        return [int(p) for p in ns._ip("netns", "pids", self.name, check=False).split()]

    def destroy(self) -> None:
        # Anything still inside was started in this namespace of ours.
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        ns._ip("netns", "del", self.name, check=False)


@dataclass
class Lan:
    """The bridge and its legs; :meth:`machine` adds a worker's namespace."""

    server: Netns  # the rig's sshd namespace
    server_host: str  # the sshd's address, as lines name it
    hub: Netns = field(default_factory=Netns)
    machines: list[Machine] = field(default_factory=list)

    def _addr(self, last: int) -> str:
        return f"10.177.{self.hub.slot}.{last}"

    @property
    def here(self) -> str:
        """This machine's address on the bridge (the scheduler's)."""
        return self._addr(65)

    @property
    def server_leg(self) -> str:
        return self._addr(66)

    def create(self) -> Lan:
        try:
            self.hub.create()
            self._hub_ip(
                f"link add {HUB_BRIDGE} type bridge", f"link set {HUB_BRIDGE} up"
            )
            self._leg(None, self.here)
            self._leg(self.server.name, self.server_leg)
        except BaseException:
            self.destroy()
            raise
        return self

    def machine(self) -> Machine:
        """A new worker machine: a namespace on the bridge that reaches the sshd."""
        number = len(self.machines)
        if number >= 50:
            raise RuntimeError("the rig's LAN has room for 50 machines")
        m = Machine(
            f"nbt-{self.hub.owner}-{next(ns._counter)}", self._addr(70 + number)
        )
        ns._ip("netns", "add", m.name)
        self.machines.append(m)
        ns._ip("-n", m.name, "link", "set", "lo", "up")
        self._leg(m.name, m.address)
        ns._ip(
            "-n",
            m.name,
            "route",
            "add",
            f"{self.server_host}/32",
            "via",
            self.server_leg,
        )
        return m

    def _hub_ip(self, *commands: str) -> None:
        ns._ip("-n", self.hub.name, "-batch", "-", stdin="\n".join(commands) + "\n")

    def _leg(self, where: str | None, address: str) -> None:
        """A veth from the bridge to ``where`` (None: this machine), at ``address``."""
        number = next(ns._counter)  # unique in this run, as the namespaces' numbers
        inside = f"nbt{self.hub.owner}b{number}"  # the hub's end
        outside = f"nbt{self.hub.owner}l{number}"
        if len(outside) > 15:  # IFNAMSIZ - 1
            raise ValueError(f"interface name {outside!r} is too long")
        if where is None:
            ns._ip(
                "link",
                "add",
                outside,
                "type",
                "veth",
                "peer",
                "name",
                inside,
                "netns",
                self.hub.name,
            )
        else:
            self._hub_ip(
                f"link add {inside} type veth peer name {outside} netns {where}"
            )
        self._hub_ip(f"link set {inside} master {HUB_BRIDGE}", f"link set {inside} up")
        at = [] if where is None else ["-n", where]
        ns._ip(
            *at,
            "-batch",
            "-",
            stdin=(f"addr add {address}/26 dev {outside}\nlink set {outside} up\n"),
        )

    def destroy(self) -> None:
        """Every machine, then the hub (its veths go with it); idempotent."""
        for m in self.machines:
            m.destroy()
        self.machines.clear()
        self.hub.destroy()

    def __enter__(self) -> Lan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()
