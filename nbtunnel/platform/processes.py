"""Process lifetimes and sessions: what ends the engine with its caller, how
a child is started out of reach of the caller's Ctrl-C, and which signals
ask a process to stop."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

_PR_SET_PDEATHSIG = 1
# Windows: OpenProcess's right to wait on a process, and its errors.
_SYNCHRONIZE = 0x00100000
_INFINITE = 0xFFFFFFFF
_ERROR_INVALID_PARAMETER = 87  # no such process (any more)
# How often a POSIX watch looks at its parent: an engine outliving its
# caller by a second is harmless, and the check is one system call.
WATCH_INTERVAL = 1.0
# Every POSIX system has it; Windows has none (a Git Bash is no system shell).
POSIX_SHELL = "/bin/sh"


# Besides Ctrl-C's SIGINT: a kill's SIGTERM, and a closed terminal's SIGHUP.
_STOP_SIGNALS = ("SIGTERM", "SIGHUP")


def stop_signals() -> list[signal.Signals]:
    """The signals, other than SIGINT, that ask this process to stop, as
    this system has them (Windows has no SIGHUP): probed when called."""
    found = (getattr(signal, name, None) for name in _STOP_SIGNALS)
    return [signum for signum in found if signum is not None]


def die_with_parent(signum: int) -> bool:
    """Have the system send ``signum`` when the parent exits (Linux's
    ``PR_SET_PDEATHSIG``); False where libc has no ``prctl`` (macOS, Windows).

    It fires when the parent *thread* that spawned us exits, so the spawn
    must come from a thread that lives as long as the child.
    """
    libc: Any
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, TypeError, AttributeError):
        return False  # Windows cannot open "no library", macOS has no prctl
    return bool(prctl(_PR_SET_PDEATHSIG, signum) == 0)


def alive_and_mine(pid: int) -> bool:
    """Whether ``pid`` runs and this user may signal it (its own process).

    Where there are no user ids (Windows: no ``os.getuid``, and signal 0
    would terminate the process there) this cannot be told: True.
    """
    if getattr(os, "getuid", None) is None:
        return True
    try:
        os.kill(pid, 0)  # no signal sent: the check alone
    except ProcessLookupError:
        return False  # gone
    except PermissionError:
        return False  # another user's
    return True


def watch_parent(pid: int, on_gone: Callable[[], None]) -> bool:
    """Call ``on_gone()`` (in a daemon thread) once the process ``pid``, our
    parent, has exited; False where it cannot be watched.

    Works where PDEATHSIG does not: on POSIX our parent changes when it dies
    (we are re-parented), which ``os.getppid()`` sees; on Windows the
    parent's handle is waited on.  (Never ``os.kill(pid, 0)``: on Windows
    that terminates the process.)
    """
    windll = getattr(ctypes, "windll", None)
    if windll is not None:
        return _watch_windows(pid, on_gone)

    def poll() -> None:
        while os.getppid() == pid:
            time.sleep(WATCH_INTERVAL)
        on_gone()

    threading.Thread(target=poll, name="nbtunnel-parent-watch", daemon=True).start()
    return True


def _watch_windows(pid: int, on_gone: Callable[[], None]) -> bool:
    # Typed as Any: mypy on POSIX knows no WinDLL.
    api: Any = ctypes
    kernel32 = api.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenProcess.restype = ctypes.c_void_p
    kernel32.OpenProcess.argtypes = (ctypes.c_uint32, ctypes.c_int, ctypes.c_uint32)
    kernel32.WaitForSingleObject.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
    kernel32.CloseHandle.argtypes = (ctypes.c_void_p,)
    handle = kernel32.OpenProcess(_SYNCHRONIZE, 0, pid)
    if not handle:
        if api.get_last_error() == _ERROR_INVALID_PARAMETER:
            on_gone()  # gone already
            return True
        return False  # not ours to watch (another user's, say)

    def wait() -> None:
        try:
            kernel32.WaitForSingleObject(handle, _INFINITE)
        finally:
            kernel32.CloseHandle(handle)
        on_gone()

    threading.Thread(target=wait, name="nbtunnel-parent-watch", daemon=True).start()
    return True


def exit_after(cleanup: Callable[[], None], grace: float) -> NoReturn:
    """Run ``cleanup``, then end this process at once, from any thread
    (``sys.exit`` would end only the calling thread); after ``grace`` s
    of a cleanup that hangs, end it anyway."""
    timer = threading.Timer(grace, os._exit, (0,))
    timer.daemon = True
    timer.start()
    with contextlib.suppress(Exception):
        cleanup()
    os._exit(0)


def new_session() -> dict[str, Any]:
    """``subprocess.Popen`` arguments that start the child in a session (POSIX)
    or process group (Windows) of its own: a Ctrl-C or a kernel interrupt
    sent to the caller's group does not reach it."""
    if hasattr(os, "setsid"):
        return {"start_new_session": True}
    return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}


def shell_command(command: str) -> list[str] | None:
    """How ssh(1) runs a ProxyCommand: ``$SHELL -c "exec <command>"``; None
    where there is no POSIX shell (Windows)."""
    if not os.path.exists(POSIX_SHELL):
        return None
    shell = os.environ.get("SHELL") or POSIX_SHELL
    return [shell, "-c", f"exec {command}"]
