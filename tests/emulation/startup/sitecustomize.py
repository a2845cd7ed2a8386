"""Makes this Linux interpreter look like macOS or Windows to nbtunnel.

``NBTUNNEL_EMULATE=macos`` or ``windows`` in the environment, and this
folder on ``PYTHONPATH``: Python imports ``sitecustomize`` from ``sys.path``
at start-up, before any user code, so a process and every Python process it
starts with its environment (nbtunnel's engine) run emulated.

What each OS lacks is removed or made to fail the way it fails there, so
that nbtunnel's capability probes (``hasattr(socket, ...)``, importable
modules, ``setsockopt`` succeeding) take the very branch a Mac or a Windows
machine takes.  ``sys.platform`` stays ``linux``: the standard library's own
platform branches must keep working on the Linux kernel underneath, so code
that switches on the platform's name is not covered here (the real
macOS/Windows CI is).

- both: socket option numbers are the target OS's (``SOL_SOCKET`` 0xffff,
  BSD/Winsock ``SO_*`` and ``TCP_*``), translated to Linux's in
  ``setsockopt``/``getsockopt``; a number the target OS does not know
  raises ENOPROTOOPT as it would there (a hard-coded Linux option number
  fails).  ``select.epoll`` is gone.  ``ctypes`` finds no ``prctl``.
- macOS: no ``TCP_QUICKACK``/``TCP_KEEPIDLE`` (``TCP_KEEPALIVE`` is the idle
  time), no ``MSG_NOSIGNAL``, ``SOCK_NONBLOCK``, ``SOCK_CLOEXEC``, ``pipe2``,
  ``splice``, ...
- both: no ``AF_NETLINK`` and no ``/proc`` (opening under it fails as a
  missing file): nothing says which user owns a connection.
- Windows: no ``AF_UNIX``, ``MSG_DONTWAIT``, ``SO_REUSEPORT``; a
  ``SO_EXCLUSIVEADDRUSE``; ``SO_REUSEADDR`` lets another socket bind the
  same port (set as Linux's ``SO_REUSEADDR`` + ``SO_REUSEPORT``, as close as
  Linux gets to Windows' port sharing); ``socketpair`` over AF_INET
  loopback as CPython implements it there; ``select`` takes sockets only
  and not three empty lists, and it is the default selector; no
  ``termios``, ``fcntl``, ``pwd``, ``grp``, ``resource``, ``tty``, ``pty``;
  no ``fork``, ``setsid``, ``killpg``, ``getuid``, ...; signals are only
  Windows' six; ``os.kill`` with 0/1 (CTRL_C_EVENT/CTRL_BREAK_EVENT) sends
  Ctrl-C to that process group and any other signal terminates the
  process outright (TerminateProcess: no handler runs); ``Popen`` refuses
  ``preexec_fn``/``pass_fds`` and ignores ``start_new_session`` (its
  ``CREATE_NEW_PROCESS_GROUP`` flag starts a new session instead);
  ``ctypes.CDLL(None)`` raises TypeError; no ``SSH_AUTH_SOCK`` or ``SHELL``
  in the environment, a ``USERNAME``.

With ``NBTUNNEL_EMULATE_MARKS`` naming a folder, each emulated process
writes a file named by its pid there, so a test can prove that every
process it cares about (the engine included) really ran emulated.  A
failure here ends the process: running unemulated would pass silently.
"""

# Monkeypatches the standard library by design: not for a type checker.
# mypy: ignore-errors

from __future__ import annotations

import contextlib
import os
import sys

_TARGET = os.environ.get("NBTUNNEL_EMULATE", "")

# Linux's errno numbers: the kernel underneath is Linux, and callers
# compare with the errno module's names.
_ENOPROTOOPT = 92
_ENOTSOCK = 88
_EINVAL = 22

# Socket levels and options: (target number) -> Linux option name; None is
# an option the target OS has and Linux has not (accepted, remembered, no
# effect).  Numbers from <sys/socket.h>/<netinet/tcp.h> on macOS and from
# <winsock2.h>/<ws2ipdef.h>.
_BSD_SOL_SOCKET = 0xFFFF
_BSD_SO = {
    0x0001: "SO_DEBUG",
    0x0002: "SO_ACCEPTCONN",
    0x0004: "SO_REUSEADDR",
    0x0008: "SO_KEEPALIVE",
    0x0010: "SO_DONTROUTE",
    0x0020: "SO_BROADCAST",
    0x0040: None,  # SO_USELOOPBACK
    0x0080: "SO_LINGER",
    0x0100: "SO_OOBINLINE",
    0x1001: "SO_SNDBUF",
    0x1002: "SO_RCVBUF",
    0x1003: "SO_SNDLOWAT",
    0x1004: "SO_RCVLOWAT",
    0x1005: "SO_SNDTIMEO",
    0x1006: "SO_RCVTIMEO",
    0x1007: "SO_ERROR",
    0x1008: "SO_TYPE",
}
_SO_NAMES = {
    "SO_DEBUG": 0x0001,
    "SO_ACCEPTCONN": 0x0002,
    "SO_REUSEADDR": 0x0004,
    "SO_KEEPALIVE": 0x0008,
    "SO_DONTROUTE": 0x0010,
    "SO_BROADCAST": 0x0020,
    "SO_USELOOPBACK": 0x0040,
    "SO_LINGER": 0x0080,
    "SO_OOBINLINE": 0x0100,
    "SO_SNDBUF": 0x1001,
    "SO_RCVBUF": 0x1002,
    "SO_SNDLOWAT": 0x1003,
    "SO_RCVLOWAT": 0x1004,
    "SO_SNDTIMEO": 0x1005,
    "SO_RCVTIMEO": 0x1006,
    "SO_ERROR": 0x1007,
    "SO_TYPE": 0x1008,
}
_MACOS_SO_EXTRA = {
    "SO_REUSEPORT": (0x0200, "SO_REUSEPORT"),
    "SO_NOSIGPIPE": (0x1022, None),
}
# ~SO_REUSEADDR, as <winsock2.h> defines it.
_WIN_EXCLUSIVE = ~0x0004
_WIN_SO_EXTRA = {"SO_EXCLUSIVEADDRUSE": (_WIN_EXCLUSIVE, None)}

# name: (target number, Linux name or None)
_MACOS_TCP = {
    "TCP_NODELAY": (0x01, "TCP_NODELAY"),
    "TCP_MAXSEG": (0x02, "TCP_MAXSEG"),
    "TCP_KEEPALIVE": (0x10, "TCP_KEEPIDLE"),  # macOS's name for the idle time
    "TCP_KEEPINTVL": (0x101, "TCP_KEEPINTVL"),
    "TCP_KEEPCNT": (0x102, "TCP_KEEPCNT"),
    "TCP_FASTOPEN": (0x105, "TCP_FASTOPEN"),
    "TCP_NOTSENT_LOWAT": (0x201, "TCP_NOTSENT_LOWAT"),
}
# Numbers macOS knows but Python does not name (TCP_NOPUSH, TCP_NOOPT, ...):
# setting them succeeds there, so it succeeds here, without effect.
_MACOS_TCP_UNNAMED = (0x04, 0x08, 0x20, 0x40, 0x80, 0x100, 0x103, 0x104, 0x106)
_WINDOWS_TCP = {
    "TCP_NODELAY": (1, "TCP_NODELAY"),
    "TCP_KEEPIDLE": (3, "TCP_KEEPIDLE"),
    "TCP_MAXSEG": (4, "TCP_MAXSEG"),
    "TCP_FASTOPEN": (15, "TCP_FASTOPEN"),
    "TCP_KEEPCNT": (16, "TCP_KEEPCNT"),
    "TCP_KEEPINTVL": (17, "TCP_KEEPINTVL"),
}
# 12 (TCP_CONGESTION_ALGORITHM there) is left out: it is Linux's
# TCP_QUICKACK, and code that hard-codes it must not pass here.
_WINDOWS_TCP_UNNAMED = (2, 10, 11, 13, 14, 18, 19)

# subprocess's Windows-only names (<winbase.h>).
_CREATE_NEW_PROCESS_GROUP = 0x00000200
_WINDOWS_CREATION_FLAGS = {
    "CREATE_NEW_PROCESS_GROUP": _CREATE_NEW_PROCESS_GROUP,
    "CREATE_NEW_CONSOLE": 0x00000010,
    "DETACHED_PROCESS": 0x00000008,
    "CREATE_NO_WINDOW": 0x08000000,
}
_WINDOWS_SIGNALS = {"SIGABRT", "SIGFPE", "SIGILL", "SIGINT", "SIGSEGV", "SIGTERM"}
_WINDOWS_BLOCKED_MODULES = frozenset(
    {"termios", "fcntl", "pwd", "grp", "resource", "tty", "pty", "syslog", "spwd"}
)
_WINDOWS_NO_OS = [
    "fork",
    "forkpty",
    "register_at_fork",
    "setsid",
    "getsid",
    "setpgid",
    "getpgid",
    "setpgrp",
    "getpgrp",
    "killpg",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getgroups",
    "setuid",
    "seteuid",
    "setgid",
    "setegid",
    "setreuid",
    "setregid",
    "initgroups",
    "fchmod",
    "fchown",
    "chown",
    "lchown",
    "mkfifo",
    "mknod",
    "openpty",
    "sendfile",
    "sysconf",
    "pathconf",
    "fpathconf",
    "uname",
    "getloadavg",
    "nice",
    "sched_getaffinity",
    "sched_setaffinity",
    "pipe2",
    "posix_spawn",
    "posix_spawnp",
    "wait3",
    "wait4",
    "waitid",
    "WNOHANG",
    "O_NONBLOCK",
    "O_NOCTTY",
    "O_CLOEXEC",
    "O_NOFOLLOW",
    "O_DIRECTORY",
    "splice",
    "eventfd",
    "memfd_create",
    "posix_fadvise",
    "posix_fallocate",
    "sync",
    "ttyname",
    "ctermid",
    "getpriority",
    "setpriority",
    "pidfd_open",
    "copy_file_range",
    "getrandom",
    "O_DIRECT",
    "O_PATH",
    "O_TMPFILE",
    "O_NOATIME",
]
_MACOS_NO_OS = [
    "pipe2",
    "splice",
    "eventfd",
    "memfd_create",
    "sched_getaffinity",
    "sched_setaffinity",
    "posix_fadvise",
    "posix_fallocate",
    "pidfd_open",
    "copy_file_range",
    "getrandom",
    "O_DIRECT",
    "O_PATH",
    "O_TMPFILE",
    "O_NOATIME",
]
_LINUX_ONLY_SOCKET = [
    "MSG_NOSIGNAL",
    "MSG_MORE",
    "MSG_CONFIRM",
    "MSG_CMSG_CLOEXEC",
    "MSG_FASTOPEN",
    "MSG_ERRQUEUE",
    "SOCK_NONBLOCK",
    "SOCK_CLOEXEC",
    "AF_PACKET",
    "AF_NETLINK",
    "AF_ALG",
    "AF_CAN",
    "AF_TIPC",
    "AF_RDS",
    "AF_VSOCK",
    "SOL_ALG",
    "SOL_CAN_BASE",
    "SOL_CAN_RAW",
    "SOL_RDS",
    "SOL_TIPC",
    "sethostname",
]
# (SOL_IP, SOL_TCP and SOL_UDP stay: CPython defines them everywhere.)


def _delete(module: object, names: list[str] | tuple[str, ...]) -> None:
    for name in names:
        if hasattr(module, name):
            delattr(module, name)


class _Hidden:
    """A method the target OS's socket objects do not have (hasattr is False)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, owner: type | None = None) -> object:
        raise AttributeError(f"emulated {_TARGET}: socket has no {self.name}")


def _emulate_sockets(target: str) -> None:
    import socket

    real = socket.socket
    linux = {
        name: getattr(socket, name)
        for name in dir(socket)
        if name.startswith(("SO_", "TCP_"))
    }
    linux_sol, linux_tcp = socket.SOL_SOCKET, socket.IPPROTO_TCP

    so: dict[int, str | None] = dict(_BSD_SO)
    names = dict(_SO_NAMES)
    if target == "macos":
        tcp, unnamed = _MACOS_TCP, _MACOS_TCP_UNNAMED
        extra = _MACOS_SO_EXTRA
    else:
        tcp, unnamed = _WINDOWS_TCP, _WINDOWS_TCP_UNNAMED
        extra = _WIN_SO_EXTRA
        del names["SO_USELOOPBACK"]  # not a Python name on Windows
    for name, (number, native) in extra.items():
        so[number] = native
        names[name] = number
    tcp_map: dict[int, str | None] = {n: native for n, native in tcp.values()}
    tcp_map.update(dict.fromkeys(unnamed))

    # The module's names: the target's, and only those.
    for name in linux:
        delattr(socket, name)
    for name, number in names.items():
        setattr(socket, name, number)
    for name, (number, _) in tcp.items():
        setattr(socket, name, number)
    socket.SOL_SOCKET = _BSD_SOL_SOCKET
    _delete(socket, _LINUX_ONLY_SOCKET)

    def native(level: int, option: int) -> tuple[int, int] | None:
        """Linux (level, option), None for a no-op; raises like the target OS."""
        table = (
            so if level == _BSD_SOL_SOCKET else tcp_map if level == linux_tcp else None
        )
        if table is None:
            if level == linux_sol:  # Linux's SOL_SOCKET, hard-coded
                raise OSError(_ENOPROTOOPT, "Protocol not available")
            return level, option
        if option not in table:
            raise OSError(_ENOPROTOOPT, "Protocol not available")
        name = table[option]
        if name is None:
            return None
        return (linux_sol if table is so else linux_tcp), linux[name]

    reuse = _SO_NAMES["SO_REUSEADDR"]
    windows = target == "windows"

    class EmulatedSocket(real):
        __slots__ = ("_emulated_options",)
        sendmsg_afalg = _Hidden()  # Linux's kernel crypto API
        if windows:
            sendmsg = _Hidden()
            recvmsg = _Hidden()
            recvmsg_into = _Hidden()

        def _noops(self) -> dict[tuple[int, int], object]:
            try:
                return self._emulated_options
            except AttributeError:
                self._emulated_options: dict[tuple[int, int], object] = {}
                return self._emulated_options

        def setsockopt(self, level: int, option: int, *value: object) -> None:
            where = native(level, option)
            if (
                windows
                and level == _BSD_SOL_SOCKET
                and option in (reuse, _WIN_EXCLUSIVE)
            ):
                # Winsock refuses both on one socket (WSAEINVAL).
                other = _WIN_EXCLUSIVE if option == reuse else reuse
                if self._noops().get((level, other)):
                    raise OSError(_EINVAL, "An invalid argument was supplied")
                self._noops()[(level, option)] = value[0] if value else 0
            if where is None:
                self._noops()[(level, option)] = value[0] if value else 0
                return
            super().setsockopt(*where, *value)
            if windows and (level, option) == (_BSD_SOL_SOCKET, reuse):
                # Windows' SO_REUSEADDR lets another socket bind the same
                # port while this one holds it.
                super().setsockopt(linux_sol, linux["SO_REUSEPORT"], *value)

        def getsockopt(self, level: int, option: int, *buflen: int) -> object:
            where = native(level, option)
            if where is None:
                stored = self._noops().get((level, option), 0)
                return stored if not buflen else bytes(buflen[0])
            return super().getsockopt(*where, *buflen)

    EmulatedSocket.__name__ = EmulatedSocket.__qualname__ = "socket"
    EmulatedSocket.__module__ = "socket"
    # socket.py's own helpers (accept, create_connection, socketpair, fromfd)
    # look the class up in the module at call time.
    socket.socket = EmulatedSocket

    if windows:
        _delete(socket, ["AF_UNIX", "MSG_DONTWAIT"])
        socket.socketpair = _loopback_socketpair


def _loopback_socketpair(
    family: int | None = None, type: int = 1, proto: int = 0
) -> tuple[object, object]:
    """socketpair() as CPython implements it on Windows: AF_INET loopback."""
    import socket

    family = socket.AF_INET if family is None else family
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    if family not in (socket.AF_INET, socket.AF_INET6):
        raise ValueError(
            "Only AF_INET and AF_INET6 socket address families are supported"
        )
    lsock = socket.socket(family, type, proto)
    try:
        lsock.bind((host, 0))
        lsock.listen()
        addr, port = lsock.getsockname()[:2]
        csock = socket.socket(family, type, proto)
        try:
            csock.setblocking(False)
            with contextlib.suppress(BlockingIOError, InterruptedError):
                csock.connect((addr, port))
            csock.setblocking(True)
            ssock, _ = lsock.accept()
        except BaseException:
            csock.close()
            raise
    finally:
        lsock.close()
    return ssock, csock


def _emulate_select(target: str) -> None:
    import select
    import selectors
    import stat

    _delete(select, [n for n in dir(select) if n.startswith(("epoll", "EPOLL"))])
    _delete(selectors, ["EpollSelector"])
    if target == "macos":
        # kqueue cannot be emulated; poll is what is left of macOS's choice.
        selectors.DefaultSelector = selectors.PollSelector
        return

    real_select = select.select

    def fd_of(obj: object) -> int:
        return obj if isinstance(obj, int) else obj.fileno()

    def sockets_only(
        rlist: list[object], wlist: list[object], xlist: list[object], *timeout: object
    ) -> tuple[list[object], list[object], list[object]]:
        if not (rlist or wlist or xlist):
            raise OSError(_EINVAL, "An invalid argument was supplied")  # WSAEINVAL
        for obj in (*rlist, *wlist, *xlist):
            try:
                is_socket = stat.S_ISSOCK(os.fstat(fd_of(obj)).st_mode)
            except OSError:
                is_socket = False
            if not is_socket:
                # WSAENOTSOCK: Windows' select takes sockets only.
                raise OSError(
                    _ENOTSOCK,
                    "An operation was attempted on something that is not a socket",
                )
        return real_select(rlist, wlist, xlist, *timeout)

    def win_select(
        self: object,
        r: list[object],
        w: list[object],
        _: object,
        timeout: object = None,
    ) -> tuple[list[object], list[object], list[object]]:
        # selectors.SelectSelector._select on win32: writers are also
        # watched for errors.
        r, w, x = sockets_only(r, w, w, timeout)
        return r, w + x, []

    select.select = sockets_only
    _delete(select, [n for n in dir(select) if n.startswith(("poll", "POLL"))])
    _delete(selectors, ["PollSelector", "DevpollSelector"])
    selectors.SelectSelector._select = win_select
    selectors.DefaultSelector = selectors.SelectSelector


def _emulate_ctypes(target: str) -> None:
    import ctypes

    real_getitem = ctypes.CDLL.__getitem__
    real_init = ctypes.CDLL.__init__

    def getitem(self: ctypes.CDLL, name: str | int) -> object:
        if name == "prctl":  # Linux's; PR_SET_PDEATHSIG does not exist elsewhere
            raise AttributeError(f"emulated {target}: function 'prctl' not found")
        return real_getitem(self, name)

    def init(
        self: ctypes.CDLL, name: str | None, *args: object, **kwargs: object
    ) -> None:
        if name is None and target == "windows":
            # ctypes on Windows: '/' in name fails for None.
            raise TypeError("argument of type 'NoneType' is not iterable")
        real_init(self, name, *args, **kwargs)

    ctypes.CDLL.__getitem__ = getitem
    ctypes.CDLL.__init__ = init


def _emulate_windows_processes() -> None:
    import signal
    import subprocess

    real_kill, real_killpg = os.kill, os.killpg
    sigint, sigkill = signal.SIGINT, signal.SIGKILL

    def kill(pid: int, sig: int) -> None:
        if sig in (0, 1):  # CTRL_C_EVENT, CTRL_BREAK_EVENT: to a process group
            try:
                real_killpg(pid, sigint)
            except ProcessLookupError:
                raise OSError(_EINVAL, "The parameter is incorrect") from None
            return
        real_kill(pid, sigkill)  # TerminateProcess: no handler runs

    os.kill = kill
    for name in [n for n in dir(signal) if n.startswith("SIG") and "_" not in n]:
        if name not in _WINDOWS_SIGNALS:
            delattr(signal, name)
    _delete(
        signal,
        [
            "alarm",
            "setitimer",
            "getitimer",
            "pause",
            "siginterrupt",
            "pthread_kill",
            "pthread_sigmask",
            "sigpending",
            "sigwait",
            "sigwaitinfo",
            "sigtimedwait",
            "ITIMER_REAL",
            "ITIMER_VIRTUAL",
            "ITIMER_PROF",
            "SIG_BLOCK",
            "SIG_UNBLOCK",
            "SIG_SETMASK",
        ],
    )
    signal.CTRL_C_EVENT = 0
    signal.CTRL_BREAK_EVENT = 1

    popen_init = subprocess.Popen.__init__

    def init(self: subprocess.Popen[bytes], *args: object, **kwargs: object) -> None:
        if kwargs.get("preexec_fn") is not None:
            raise ValueError("preexec_fn is not supported on Windows platforms")
        if kwargs.get("pass_fds"):
            raise AssertionError("pass_fds not supported on Windows.")
        # Ignored on Windows: the child shares the console's Ctrl-C...
        kwargs.pop("start_new_session", None)
        kwargs.pop("process_group", None)
        # ... unless it is started in a process group of its own.
        flags = kwargs.pop("creationflags", 0)
        if isinstance(flags, int) and flags & _CREATE_NEW_PROCESS_GROUP:
            kwargs["start_new_session"] = True
        popen_init(self, *args, **kwargs)

    subprocess.Popen.__init__ = init
    for name, value in _WINDOWS_CREATION_FLAGS.items():
        setattr(subprocess, name, value)
    subprocess.Popen.kill = subprocess.Popen.terminate


def _hide_proc() -> None:
    """No /proc (neither macOS nor Windows has one): opening under it fails
    as a missing file does (the owner-only check reads /proc/net/tcp)."""
    import builtins
    import io

    real_open = builtins.open

    def open_(file: object, *args: object, **kwargs: object) -> object:
        if isinstance(file, str) and file.startswith("/proc/"):
            raise FileNotFoundError(2, "No such file or directory", file)
        return real_open(file, *args, **kwargs)

    builtins.open = open_
    io.open = open_


def _emulate(target: str) -> None:
    if target not in ("macos", "windows"):
        raise ValueError(f"NBTUNNEL_EMULATE must be macos or windows, not {target!r}")
    # Modules that copy platform names at their import: imported while the
    # names are still Linux's, so the standard library keeps working.
    import subprocess  # noqa: F401
    import tempfile  # noqa: F401

    _emulate_sockets(target)
    import socket

    _delete(socket, ["AF_NETLINK"])  # Linux's own: the kernel's sock_diag
    _hide_proc()
    _emulate_select(target)
    _emulate_ctypes(target)
    if target == "macos":
        _delete(os, _MACOS_NO_OS)
        import signal

        _delete(
            signal, ["SIGRTMIN", "SIGRTMAX", "SIGPOLL", "SIGPWR", "SIGSTKFLT", "SIGCLD"]
        )
    else:
        import pwd

        os.environ.setdefault("USERNAME", pwd.getpwuid(os.getuid()).pw_name)
        os.environ.pop("SSH_AUTH_SOCK", None)  # Windows' agent is a named pipe
        os.environ.pop("SHELL", None)
        _emulate_windows_processes()
        for name in _WINDOWS_BLOCKED_MODULES:
            # None in sys.modules: importing fails with ModuleNotFoundError
            # and importlib.util.find_spec() says None, as where it is absent.
            sys.modules[name] = None
        _delete(os, _WINDOWS_NO_OS)
    sys._nbtunnel_emulated = target
    marks = os.environ.get("NBTUNNEL_EMULATE_MARKS")
    if marks:
        with open(os.path.join(marks, str(os.getpid())), "w") as mark:
            mark.write(target)


if _TARGET:
    try:
        _emulate(_TARGET)
    except BaseException:  # noqa: BLE001 - whatever it is, never run unemulated
        import traceback

        traceback.print_exc()
        sys.stderr.write("nbtunnel emulation failed to start; not running unemulated\n")
        os._exit(70)
