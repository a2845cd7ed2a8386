"""Which loopback this process is on: its machine and, where the system has
them, its network namespace.

Two processes of one place share ``127.0.0.1``: a forward one of them
listens on is there for the other (a Dask worker of a ``LocalCluster`` uses
the kernel's).  Linux names a network namespace by the identity of
``/proc/self/ns/net``; elsewhere (macOS, Windows) a machine has one
loopback, and its host name is the place.
"""

from __future__ import annotations

import os
import socket

NAMESPACE = "/proc/self/ns/net"
# The machine's namespace has the same number on every Linux machine: the
# boot's id tells two machines of one host name apart.
BOOT_ID = "/proc/sys/kernel/random/boot_id"


def here() -> str:
    """This process's place, the same for every process on its loopback."""
    place = socket.gethostname()
    try:
        ns = os.stat(NAMESPACE)
    except OSError:  # no network namespaces here: one loopback per machine
        return place
    try:
        with open(BOOT_ID) as f:
            place += f" boot {f.read().strip()}"
    except OSError:
        pass
    return f"{place} netns {ns.st_dev}:{ns.st_ino}"
