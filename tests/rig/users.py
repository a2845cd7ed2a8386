"""A login of the rig's own with a password, for password and PAM tests.

sshd checks passwords against the system's user database (through PAM), so
the account has to be a real one: made with useradd, given a random
password with chpasswd, removed with userdel afterwards (or, if the run was
killed, by the next run).  That needs root;
as anyone else the tests that use it skip, saying why.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

PREFIX = "nbt-login-"  # + the PID of the test run that made it
SKIP_REASON = "needs root to create a local user with a password (useradd)"


@dataclass(frozen=True)
class LoginUser:
    name: str
    password: str


def can_create() -> bool:
    return os.geteuid() == 0 and os.path.exists("/usr/sbin/useradd")


def _sweep() -> None:
    """Remove the users of test runs that were killed before cleaning up."""
    with open("/etc/passwd", encoding="utf-8") as f:
        names = [line.split(":", 1)[0] for line in f]
    for name in names:
        pid = name.removeprefix(PREFIX)
        stale = pid.isdigit() and not os.path.exists(f"/proc/{pid}")
        if name.startswith(PREFIX) and stale:
            subprocess.run(["userdel", name], capture_output=True)


@contextmanager
def login_user() -> Iterator[LoginUser]:
    """A password user of this test run's own (one name per process, so two
    runs on one machine never share it)."""
    _sweep()
    name = f"{PREFIX}{os.getpid()}"
    subprocess.run(["userdel", name], capture_output=True)  # an earlier test's
    home = ["--no-create-home", "--home-dir", "/nonexistent"]
    subprocess.run(
        ["useradd", *home, "--shell", "/bin/sh", name], check=True, capture_output=True
    )
    password = secrets.token_urlsafe(12)
    try:
        subprocess.run(
            ["chpasswd"],
            input=f"{name}:{password}\n",
            text=True,
            check=True,
            capture_output=True,
        )
        yield LoginUser(name, password)
    finally:
        subprocess.run(["userdel", name], capture_output=True)
