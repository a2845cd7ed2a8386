"""Where the system's ssh files are: ``/etc/ssh``, or ``%PROGRAMDATA%\\ssh`` on Windows.

Nothing can be probed here (both are just directories that may or may not
exist), so this is one of the few places that asks for the system's name.
"""

from __future__ import annotations

import ntpath
import os
import posixpath
import sys
from collections.abc import Mapping

WINDOWS = sys.platform == "win32"


def system_ssh_dir(
    *, windows: bool = WINDOWS, environ: Mapping[str, str] = os.environ
) -> str:
    """The directory of the system-wide ssh_config and known hosts, as
    OpenSSH (Win32-OpenSSH on Windows) reads them."""
    if windows:
        return ntpath.join(environ.get("PROGRAMDATA") or r"C:\ProgramData", "ssh")
    return "/etc/ssh"


def system_ssh_config(*, windows: bool = WINDOWS) -> str:
    join = ntpath.join if windows else posixpath.join
    return join(system_ssh_dir(windows=windows), "ssh_config")


def global_known_hosts(*, windows: bool = WINDOWS) -> tuple[str, str]:
    """ssh's default GlobalKnownHostsFile: two files, as ssh reads them."""
    join = ntpath.join if windows else posixpath.join
    base = system_ssh_dir(windows=windows)
    return join(base, "ssh_known_hosts"), join(base, "ssh_known_hosts2")


SYSTEM_SSH_CONFIG = system_ssh_config()
GLOBAL_KNOWN_HOSTS = global_known_hosts()
