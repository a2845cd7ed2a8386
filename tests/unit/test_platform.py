"""nbtunnel.platform: each probe takes the branch the system's capabilities
call for, which is what lets the emulation on Linux run a Mac's or a
Windows machine's code.  Real sockets, real processes and the real kernel's
answers; the only thing altered is what the ``socket`` module offers."""

from __future__ import annotations

import errno
import os
import selectors
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from nbtunnel import ConnectError
from nbtunnel.platform import agent, paths, processes, sockets
from nbtunnel.ssh.agent import Agent

from tests.rig import clients

linux_only = pytest.mark.skipif(
    not hasattr(socket, "TCP_QUICKACK"),
    reason="this system has no TCP_QUICKACK (a Linux TCP option)",
)
# An IPPROTO_TCP option number no system has: the kernel answers ENOPROTOOPT.
NO_SUCH_OPTION = 9999


@pytest.fixture
def pair() -> object:
    """A connected TCP pair on loopback: (client, server side)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
    yield client, conn
    client.close()
    conn.close()


class Counting(socket.socket):
    """A real socket that counts its setsockopt calls."""

    calls = 0

    def setsockopt(self, *args: object) -> None:  # type: ignore[override]
        self.calls += 1
        super().setsockopt(*args)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _fresh_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sockets, "_refused", set())


@linux_only
def test_quickack_where_the_system_has_it(pair) -> None:
    client, _ = pair
    sockets.quickack(client)
    assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 1


def test_quickack_without_the_option_does_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # macOS and Windows: socket has no TCP_QUICKACK.
    monkeypatch.delattr(socket, "TCP_QUICKACK", raising=False)
    with Counting(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sockets.quickack(sock)
        assert sock.calls == 0


def test_quickack_refused_by_the_kernel_never_raises_and_is_not_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The bug on macOS: the option number is no TCP option there, and
    # setsockopt raised ENOPROTOOPT before every read.  The kernel here
    # refuses this number for real.
    monkeypatch.setattr(socket, "TCP_QUICKACK", NO_SUCH_OPTION, raising=False)
    with Counting(socket.AF_INET, socket.SOCK_STREAM) as sock:
        with pytest.raises(OSError) as refused:
            socket.socket.setsockopt(sock, socket.IPPROTO_TCP, NO_SUCH_OPTION, 1)
        assert refused.value.errno == errno.ENOPROTOOPT
        sockets.quickack(sock)
        sockets.quickack(sock)
        assert sock.calls == 1


def test_quickack_on_a_closed_socket_does_not_raise() -> None:
    sock = socket.socket()
    sock.close()
    sockets.quickack(sock)  # the next read reports it


@linux_only
def test_keepalive_sets_the_linux_options(pair) -> None:
    client, _ = pair
    sockets.keepalive(client, idle=7, interval=3, count=4)
    assert client.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 7
    assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 3
    assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4


@linux_only
def test_keepalive_takes_the_macos_idle_option_without_tcp_keepidle(
    pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = pair
    idle = socket.TCP_KEEPIDLE
    interval = client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL)
    # macOS names the idle time TCP_KEEPALIVE; here it is given Linux's
    # number so that the kernel's answer shows which option was set.
    monkeypatch.delattr(socket, "TCP_KEEPIDLE")
    monkeypatch.setattr(socket, "TCP_KEEPALIVE", idle, raising=False)
    monkeypatch.delattr(socket, "TCP_KEEPINTVL")
    monkeypatch.setattr(socket, "TCP_KEEPCNT", NO_SUCH_OPTION)  # refused
    sockets.keepalive(client, idle=11, interval=3, count=4)
    assert client.getsockopt(socket.IPPROTO_TCP, idle) == 11
    assert client.getsockopt(socket.IPPROTO_TCP, 5) == interval  # untouched


def test_the_waker_wakes_a_real_selector() -> None:
    waker = sockets.Waker()
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(waker, selectors.EVENT_READ)
            assert sel.select(0) == []
            threading.Timer(0.05, waker.wake).start()
            woken = sel.select(5.0)
            assert [key.fileobj for key, _ in woken] == [waker]
            waker.wake()  # a second wake-up before the drain is no error
            waker.drain()
            assert sel.select(0) == []
    finally:
        waker.close()
    waker.wake()  # closed: nobody to wake, no error


def test_the_waker_is_a_socket_so_windows_select_takes_it() -> None:
    waker = sockets.Waker()
    try:
        # select() on Windows takes sockets only: what is registered must
        # be one.
        with socket.socket(fileno=os.dup(waker.fileno())) as sock:
            assert sock.type == socket.SOCK_STREAM
    finally:
        waker.close()


def _listening(port: int = 0, *, shared: bool = False) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if shared:
            sockets.shared_port(sock)
        else:
            sockets.exclusive_address(sock)
        sock.bind(("127.0.0.1", port))
        sock.listen()
    except OSError:
        sock.close()
        raise
    return sock


def test_an_exclusive_bind_refuses_a_second_socket_on_the_port() -> None:
    with _listening() as first:
        port = first.getsockname()[1]
        with pytest.raises(OSError) as taken:
            _listening(port)
        assert taken.value.errno == errno.EADDRINUSE


def test_a_shared_port_takes_sockets_that_ask_the_same_and_no_other() -> None:
    if not hasattr(socket, "SO_REUSEPORT"):
        pytest.skip("no SO_REUSEPORT here: test_no_shared_port_without_the_option")
    with _listening(shared=True) as first:
        port = first.getsockname()[1]
        with _listening(port, shared=True) as second:
            # Both serve: the system spreads connections between them.
            served = set()
            for _ in range(64):
                with socket.create_connection(("127.0.0.1", port)):
                    pass
            for listener in (first, second):
                listener.setblocking(False)
                try:
                    while True:
                        listener.accept()[0].close()
                        served.add(id(listener))
                except BlockingIOError:
                    pass
            # Linux spreads them; macOS gives new ones to the newest listener.
            assert id(second) in served
            if sys.platform.startswith("linux"):
                assert served == {id(first), id(second)}
            with pytest.raises(OSError) as taken:
                _listening(port)  # one that did not ask: refused
            assert taken.value.errno == errno.EADDRINUSE


def test_no_shared_port_without_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(socket, "SO_REUSEPORT", raising=False)  # as on Windows
    with socket.socket() as sock:
        assert sockets.shared_port(sock) is False
    with _listening(shared=True) as first:
        with pytest.raises(OSError) as taken:
            _listening(first.getsockname()[1], shared=True)
        assert taken.value.errno == errno.EADDRINUSE


def test_an_exclusive_bind_takes_a_port_left_in_time_wait() -> None:
    first = _listening()
    port = first.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = first.accept()
    conn.close()  # the listening side closes first: its port is in TIME_WAIT
    client.recv(1)
    client.close()
    first.close()
    with _listening(port) as again:
        assert again.getsockname()[1] == port


def test_windows_exclusive_option_replaces_reuseaddr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Windows has SO_EXCLUSIVEADDRUSE; given a number this kernel takes,
    # the option set is that one, and SO_REUSEADDR (a port thief there) not.
    monkeypatch.setattr(
        socket, "SO_EXCLUSIVEADDRUSE", socket.SO_KEEPALIVE, raising=False
    )
    with socket.socket() as sock:
        sockets.exclusive_address(sock)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0


def test_the_signals_that_ask_to_stop_are_probed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = [signal.SIGTERM]
    if hasattr(signal, "SIGHUP"):
        expected.append(signal.SIGHUP)
    assert processes.stop_signals() == expected
    monkeypatch.delattr(signal, "SIGHUP", raising=False)  # as on Windows
    assert processes.stop_signals() == [signal.SIGTERM]


def test_unix_sockets_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as tcp:
        assert not sockets.is_unix(tcp)
    if hasattr(socket, "AF_UNIX"):
        assert sockets.unix_family() == socket.AF_UNIX
        with socket.socket(socket.AF_UNIX) as unix:
            assert sockets.is_unix(unix)
    monkeypatch.delattr(socket, "AF_UNIX", raising=False)
    assert sockets.unix_family() is None
    with socket.socket() as tcp:
        assert not sockets.is_unix(tcp)


def test_agent_transport_with_unix_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(socket, "AF_UNIX"):
        pytest.skip("this system has no unix sockets (AF_UNIX; Windows)")
    monkeypatch.setenv("SSH_AUTH_SOCK", "/run/agent.sock")
    assert agent.default_path() == "/run/agent.sock"
    assert agent.transport("/run/agent.sock") == "unix"
    assert agent.transport(None) == "none"
    monkeypatch.delenv("SSH_AUTH_SOCK")
    assert agent.default_path() is None


def test_agent_transport_without_unix_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    # Windows: SSH_AUTH_SOCK is some other program's (Git Bash's) socket;
    # the agent is the system's own, over its named pipe or Pageant.
    monkeypatch.delattr(socket, "AF_UNIX", raising=False)
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/ssh-XXXX/agent.1")
    assert agent.default_path() == agent.WINDOWS_PIPE
    assert agent.transport(agent.WINDOWS_PIPE) == "system"
    assert agent.transport(agent.WINDOWS_PIPE.upper()) == "system"
    assert agent.transport(None) == "none"
    assert agent.transport("/tmp/agent.sock") == "unsupported"
    with pytest.raises(ConnectError, match=r"IdentityAgent /tmp/agent.sock is a unix"):
        Agent("/tmp/agent.sock", 1.0).keys()


def test_paths() -> None:
    assert paths.system_ssh_dir(windows=False) == "/etc/ssh"
    assert paths.global_known_hosts(windows=False) == (
        "/etc/ssh/ssh_known_hosts",
        "/etc/ssh/ssh_known_hosts2",
    )
    assert (
        paths.system_ssh_dir(windows=True, environ={"PROGRAMDATA": r"D:\Data"})
        == r"D:\Data\ssh"
    )
    assert paths.system_ssh_dir(windows=True, environ={}) == r"C:\ProgramData\ssh"
    assert paths.system_ssh_config(windows=True).endswith(r"\ssh\ssh_config")
    assert paths.global_known_hosts(windows=True)[1].endswith(r"\ssh\ssh_known_hosts2")


def test_a_new_session_is_out_of_reach_of_the_callers_group() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], **processes.new_session()
    )
    try:
        assert os.getsid(child.pid) == child.pid != os.getsid(0)
    finally:
        child.kill()
        child.wait()


def test_a_new_session_without_setsid(monkeypatch: pytest.MonkeyPatch) -> None:
    # Windows: a new process group instead (the flag is 0 where subprocess
    # has none, which Popen accepts on POSIX too).
    monkeypatch.delattr(os, "setsid")
    kwargs = processes.new_session()
    assert list(kwargs) == ["creationflags"]
    assert kwargs["creationflags"] == getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
    subprocess.run([sys.executable, "-c", ""], check=True, **kwargs)


def test_proxy_command_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHELL", "/bin/sh")
    argv = processes.shell_command("echo $((6 * 7))")
    assert argv == ["/bin/sh", "-c", "exec echo $((6 * 7))"]
    assert subprocess.run(argv, capture_output=True, text=True).stdout == "42\n"
    monkeypatch.setattr(processes, "POSIX_SHELL", "/nonexistent/sh")
    assert processes.shell_command("nc host 22") is None


def _grandchild(tmp_path: Path, body: str) -> tuple[Path, Path]:
    """Run ``body`` in a grandchild whose parent exits once it says "ready"
    (in the file returned first); ``body`` may write the second file."""
    ready, fired = tmp_path / "ready", tmp_path / "fired"
    grandchild = (
        textwrap.dedent(
            f"""
        import os, signal, sys, time
        from pathlib import Path
        from nbtunnel.platform import processes
        fired = Path({str(fired)!r})
        parent = os.getppid()
        """
        )
        + textwrap.dedent(body)
        + textwrap.dedent(
            f"""
        Path({str(ready)!r}).write_text(str(os.getpid()))
        time.sleep(30)
        """
        )
    )
    child = textwrap.dedent(
        f"""
        import subprocess, sys, time
        from pathlib import Path
        subprocess.Popen([sys.executable, "-c", {grandchild!r}],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        ready = Path({str(ready)!r})
        while not ready.exists():
            time.sleep(0.01)
        """
    )
    subprocess.run([sys.executable, "-c", child], check=True, timeout=30)
    return ready, fired


def test_the_parent_watch_fires_when_the_parent_exits(tmp_path: Path) -> None:
    ready, fired = _grandchild(
        tmp_path,
        """
        def gone():
            fired.write_text(str(os.getppid()))
            os._exit(0)
        assert processes.watch_parent(parent, gone)
        """,
    )
    pid = int(ready.read_text())
    assert clients.wait_until(fired.exists, 10.0, 0.05), "the watch never fired"
    assert clients.wait_until(lambda: not _running(pid), 10.0, 0.05)


def test_the_parent_watch_fires_at_once_when_the_parent_is_gone_already() -> None:
    fired = threading.Event()
    # Not our parent: as if re-parented before the watch began.
    assert processes.watch_parent(os.getppid() + 10**6, fired.set)
    assert fired.wait(5.0)


@pytest.mark.skipif(
    not processes.die_with_parent(0), reason="libc has prctl (Linux) only"
)
def test_pdeathsig_ends_the_child_with_its_parent(tmp_path: Path) -> None:
    _, fired = _grandchild(
        tmp_path,
        """
        def term(signum, frame):
            fired.write_text("SIGTERM")
            sys.exit(0)
        signal.signal(signal.SIGTERM, term)
        assert processes.die_with_parent(signal.SIGTERM)
        """,
    )
    assert clients.wait_until(fired.exists, 10.0, 0.05), "no SIGTERM came"
    assert fired.read_text() == "SIGTERM"


def test_no_pdeathsig_where_libc_has_no_prctl(monkeypatch: pytest.MonkeyPatch) -> None:
    # macOS's libc has no prctl (any real library here finds Linux's through
    # its own dependency on libc, so a bare object stands in for it).
    import ctypes

    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: object())
    assert processes.die_with_parent(signal.SIGTERM) is False


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_every_module_imports_where_posix_modules_and_options_are_missing() -> None:
    # Windows, roughly: no termios/fcntl/pwd/grp/resource, no AF_UNIX, no
    # MSG_DONTWAIT, no TCP_QUICKACK/TCP_KEEPIDLE.  Every nbtunnel module
    # must import, and the probes made at import must see what is missing.
    code = textwrap.dedent(
        """
        import sys, socket
        for name in ("termios", "fcntl", "pwd", "grp", "resource", "tty", "pty"):
            sys.modules[name] = None
        for name in ("AF_UNIX", "MSG_DONTWAIT", "TCP_QUICKACK", "TCP_KEEPIDLE"):
            if hasattr(socket, name):
                delattr(socket, name)
        def socketpair(family=socket.AF_INET, type=socket.SOCK_STREAM, proto=0):
            # As Windows' Python makes one: Linux has no AF_INET pairs.
            with socket.create_server(("127.0.0.1", 0)) as server:
                a = socket.create_connection(server.getsockname())
                return a, server.accept()[0]
        socket.socketpair = socketpair
        import importlib, pkgutil, nbtunnel
        # The Dask modules' distributed brings Linux's psutil, which needs
        # fcntl (test_imports_without_posix.py says more).
        dask = {"nbtunnel.dask", "nbtunnel.client.dask"}
        for m in pkgutil.walk_packages(nbtunnel.__path__, "nbtunnel."):
            if not m.name.endswith(".__main__") and m.name not in dask:
                importlib.import_module(m.name)
        from nbtunnel.platform import agent, sockets
        print(sockets.DONTWAIT, sockets.HAS_UNIX_SOCKETS, agent.default_path())
        """
    )
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["None", "False", agent.WINDOWS_PIPE]


def test_unix_socket_forwards_are_refused_in_one_line_without_unix_sockets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbtunnel import ForwardError
    from nbtunnel.forward.here import connect_unix
    from nbtunnel.forward.listener import Listener

    monkeypatch.delattr(socket, "AF_UNIX", raising=False)
    path = str(tmp_path / "forward.sock")
    with pytest.raises(ForwardError) as listening:
        Listener(path=path).bind()
    assert str(listening.value) == (
        f"cannot listen on unix socket {path}: unix-socket forwards are not "
        "supported on this system (Windows); use a TCP port"
    )
    with pytest.raises(ForwardError, match="not supported on this system"):
        connect_unix(path)
    assert not os.path.exists(path)


def test_proxy_command_is_refused_in_one_line_without_a_posix_shell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nbtunnel.ssh.proxy_command import ProxyCommand

    monkeypatch.setattr(processes, "POSIX_SHELL", "/nonexistent/sh")
    with pytest.raises(ConnectError) as refused:
        ProxyCommand("nc bastion 22").start()
    assert str(refused.value) == (
        "ProxyCommand is not supported on Windows (it needs a POSIX shell); "
        "use ProxyJump (-J) instead"
    )


def test_a_remote_forward_to_a_unix_socket_is_refused_before_the_server_listens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nbtunnel import ForwardError
    from nbtunnel.forward.remote import RemoteForward
    from nbtunnel.grammar.forwards import parse_forward

    class Server:
        """Records what the forward asks of the connection."""

        asked: list[object] = []

        def listen_remote(self, *args: object) -> object:
            self.asked.append(args)
            raise AssertionError("asked the server to listen")

        def cancel_remote(self, *args: object) -> None:
            self.asked.append(args)

    monkeypatch.delattr(socket, "AF_UNIX", raising=False)
    server = Server()
    forward = RemoteForward(0, parse_forward("-R", "8000:/run/app.sock"), server)
    with pytest.raises(ForwardError, match=r"unix socket /run/app.sock: .*TCP port"):
        forward.start()
    assert server.asked == []
