"""A login of the rig's own with a password, for password and PAM tests.

sshd checks passwords against the system's user database (through PAM), so
the account has to be a real one: made with useradd, given a random
password with chpasswd, removed with userdel afterwards.  That needs root;
as anyone else the tests that use it skip, saying why.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

NAME = "nbtunnel-login"
SKIP_REASON = "needs root to create a local user with a password (useradd)"


@dataclass(frozen=True)
class LoginUser:
    name: str
    password: str


def can_create() -> bool:
    return os.geteuid() == 0 and os.path.exists("/usr/sbin/useradd")


def _exists(name: str) -> bool:
    return subprocess.run(["id", name], capture_output=True).returncode == 0


@contextmanager
def login_user() -> Iterator[LoginUser]:
    """The rig's password user (re-made if a killed run left it behind)."""
    if _exists(NAME):
        subprocess.run(["userdel", NAME], check=True, capture_output=True)
    subprocess.run(
        [
            "useradd",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/bin/sh",
            NAME,
        ],
        check=True,
        capture_output=True,
    )
    password = secrets.token_urlsafe(12)
    try:
        subprocess.run(
            ["chpasswd"],
            input=f"{NAME}:{password}\n",
            text=True,
            check=True,
            capture_output=True,
        )
        yield LoginUser(NAME, password)
    finally:
        subprocess.run(["userdel", NAME], capture_output=True)
