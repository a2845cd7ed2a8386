"""The whole rig in one object: namespace (netns mode), sshd and targets."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from types import TracebackType

from .launcher import Targets, start_targets
from .netns import Mode, Netns, detect_mode
from .sshd import SshServer, start_sshd


@dataclass
class Rig:
    mode: Mode
    netns: Netns | None
    sshd: SshServer
    targets: Targets

    def new_sshd(self) -> SshServer:
        """Another independent sshd that reaches the same targets (close() it)."""
        return start_sshd(self.netns)

    def close(self) -> None:
        """Stop everything; the namespace goes last, once nothing runs in it."""
        with contextlib.ExitStack() as stack:
            if self.netns is not None:
                stack.callback(self.netns.destroy)
            stack.callback(self.targets.close)
            stack.callback(self.sshd.close)

    def __enter__(self) -> Rig:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def raise_nofile_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: 1000-connection tests need the fds."""
    import resource  # POSIX-only: imported here so that the rig loads everywhere

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_rig(mode: Mode | None = None) -> Rig:
    """Start namespace (netns mode), sshd and targets; mode None = detect_mode()."""
    mode = mode or detect_mode().mode
    with contextlib.ExitStack() as stack:
        netns = stack.enter_context(Netns()) if mode == "netns" else None
        targets = stack.enter_context(start_targets(netns))
        sshd = stack.enter_context(start_sshd(netns))
        stack.pop_all()
    return Rig(mode=mode, netns=netns, sshd=sshd, targets=targets)
