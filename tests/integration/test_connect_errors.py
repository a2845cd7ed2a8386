"""Every way a connection can fail, against the real sshd: the error's type and words.

Each case also checks that nothing is left half-open: no SSH session stays
on the server and no port stays bound here.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from nbtunnel import (
    AuthenticationError,
    ConnectError,
    ForwardError,
    HostKeyError,
    Manager,
    SpecError,
)

from tests.rig import clients
from tests.rig.sshd import free_port

pytestmark = pytest.mark.integration


def _line(
    sshd, *extra: str, known_hosts: Path | None = None, key: Path | None = None
) -> str:
    tokens = ["-p", str(sshd.port), "-i", str(key or sshd.client_key)]
    tokens += ["-o", "IdentitiesOnly=yes"]
    tokens += ["-o", f"UserKnownHostsFile={known_hosts or sshd.known_hosts}"]
    return shlex.join([*tokens, *extra, sshd.destination])


def _keyless_line(sshd, forward: list[str]) -> str:
    """No -i: the keys must come from the agent or the default files."""
    tokens = ["-p", str(sshd.port), "-o", f"UserKnownHostsFile={sshd.known_hosts}"]
    return shlex.join([*tokens, *forward, sshd.destination])


def _keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True
    )
    return path


def _no_new_sessions(sshd, before: set[int]) -> bool:
    return clients.wait_until(lambda: not (set(sshd.session_pids()) - before), 5)


@pytest.fixture
def forward(targets) -> list[str]:
    return ["-L", f"0:{targets.host}:{targets.echo}"]


def test_unknown_host_key_is_refused_with_its_fingerprint(
    manager: Manager, sshd, forward, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    before = set(sshd.session_pids())
    with pytest.raises(HostKeyError) as info:
        manager.open(_line(sshd, *forward, known_hosts=empty))
    message = str(info.value)
    assert f"[{sshd.host}]:{sshd.port}" in message
    assert "is unknown" in message
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(sshd.host_key_pub)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[1]
    assert fingerprint in message  # the same SHA256: string ssh-keygen prints
    assert "StrictHostKeyChecking=accept-new" in message
    assert not empty.exists() or empty.read_text() == ""
    assert _no_new_sessions(sshd, before)
    assert manager.tunnels() == []


@pytest.mark.parametrize("hashed", ["no", "yes"])
def test_accept_new_records_the_key_then_it_is_known(
    manager: Manager, sshd, targets, forward, tmp_path: Path, hashed: str
) -> None:
    known = tmp_path / "sub" / "known_hosts"
    accept = [
        "-o",
        "StrictHostKeyChecking=accept-new",
        "-o",
        f"HashKnownHosts={hashed}",
    ]
    with manager.open(_line(sshd, *accept, *forward, known_hosts=known)) as t:
        assert t.state == "up"
    recorded = known.read_text()
    name = f"[{sshd.host}]:{sshd.port}"
    assert recorded.startswith("|1|" if hashed == "yes" else f"{name} ssh-ed25519 ")
    assert (name in recorded) == (hashed == "no")
    assert recorded.split()[2] == sshd.host_key_pub.read_text().split()[1]
    # OpenSSH's own lookup finds the line, hashed or not.
    found = subprocess.run(
        ["ssh-keygen", "-F", name, "-f", str(known)], capture_output=True, text=True
    )
    assert found.returncode == 0, found.stderr
    assert recorded.split()[2] in found.stdout
    # Known now: strict checking lets it through, and nothing is added twice.
    with manager.open(_line(sshd, *forward, known_hosts=known)) as t:
        port = t.forwards[0].listen_port
        assert clients.echo_roundtrip("127.0.0.1", port, b"known", 10) == b"known"
    assert known.read_text() == recorded


@contextlib.contextmanager
def _read_only(directory: Path) -> Iterator[None]:
    """``directory`` bind-mounted read-only on itself: nobody, root included,
    writes there (EROFS), as with a home or ~/.ssh mounted read-only in a
    container."""
    mounted = subprocess.run(
        ["mount", "--bind", str(directory), str(directory)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs root): {mounted.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(directory)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True)


@pytest.mark.parametrize("unwritable", ["read-only mount", "a file in the way"])
def test_accept_new_with_an_unwritable_known_hosts_connects_and_warns(
    manager: Manager,
    sshd,
    targets,
    forward,
    tmp_path: Path,
    unwritable: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # OpenSSH warns "Failed to add the host to the list of known hosts" and
    # connects: the key was accepted, only remembering it failed.
    if unwritable == "read-only mount":
        home = tmp_path / "ssh"
        home.mkdir()
        known = home / "known_hosts"
        key = " ".join(sshd.host_key_pub.read_text().split()[:2])
        other = f"other.example {key}\n"  # another host's line: this one is new
        known.write_text(other)
        unwritable_there = _read_only(home)
    else:
        (tmp_path / "ssh").write_text("")  # a file where its directory would be
        known = tmp_path / "ssh" / "known_hosts"
        unwritable_there = contextlib.nullcontext()
    accept = ["-o", "StrictHostKeyChecking=accept-new"]
    with (
        unwritable_there,
        caplog.at_level(logging.WARNING, logger="nbtunnel"),
        manager.open(_line(sshd, *accept, *forward, known_hosts=known)) as t,
    ):
        assert t.state == "up"
        port = t.forwards[0].listen_port
        assert clients.echo_roundtrip("127.0.0.1", port, b"kept", 10) == b"kept"
        said = f"Failed to add the host to the list of known hosts ({known})"
        warned = [line for line in t.events if said in line]
        assert len(warned) == 1, list(t.events)
        assert "warning: " in warned[0]
        assert "trusted for this connection only" in warned[0]
        logged = [r for r in caplog.records if said in r.getMessage()]
        assert logged and logged[0].levelno == logging.WARNING
    if unwritable == "read-only mount":
        assert known.read_text() == other
    else:
        assert not known.exists()


def test_strict_no_accepts_an_unknown_key(
    manager: Manager, sshd, forward, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    with manager.open(
        _line(sshd, "-o", "StrictHostKeyChecking=no", *forward, known_hosts=known)
    ) as t:
        assert t.state == "up"


@pytest.mark.parametrize("mode", ["ask", "yes", "accept-new", "no"])
def test_changed_host_key_is_always_refused(
    manager: Manager, sshd, forward, tmp_path: Path, mode: str
) -> None:
    other = _keygen(tmp_path / "other_host_key")
    known = tmp_path / "known_hosts"
    blob = Path(f"{other}.pub").read_text().split()[:2]
    known.write_text(f"[{sshd.host}]:{sshd.port} {' '.join(blob)}\n")
    before = set(sshd.session_pids())
    with pytest.raises(HostKeyError) as info:
        manager.open(
            _line(
                sshd, "-o", f"StrictHostKeyChecking={mode}", *forward, known_hosts=known
            )
        )
    message = str(info.value)
    assert "CHANGED" in message
    assert "ssh-keygen -R" in message
    assert known.read_text().count("\n") == 1
    assert _no_new_sessions(sshd, before)


def test_a_known_rsa_key_is_asked_for_when_the_server_has_several(
    manager: Manager, fresh_sshd, forward, tmp_path: Path
) -> None:
    """The server also has an Ed25519 key, which paramiko would prefer; only
    the RSA key is known, so that is the one to negotiate (with rsa-sha2-*)."""
    rsa = fresh_sshd.workdir / "host_rsa"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(rsa)],
        check=True,
    )
    with fresh_sshd.config.open("a") as cfg:
        cfg.write(f"HostKey {rsa}\n")
    fresh_sshd.restart()
    known = tmp_path / "known_hosts"
    blob = Path(f"{rsa}.pub").read_text().split()[:2]
    known.write_text(f"[{fresh_sshd.host}]:{fresh_sshd.port} {' '.join(blob)}\n")
    with manager.open(_line(fresh_sshd, *forward, known_hosts=known)) as t:
        assert t.state == "up"


def test_wrong_key_is_refused_naming_the_key(
    manager: Manager, sshd, forward, tmp_path: Path
) -> None:
    wrong = _keygen(tmp_path / "id_wrong")
    before = set(sshd.session_pids())
    with pytest.raises(AuthenticationError) as info:
        manager.open(_line(sshd, *forward, key=wrong))
    message = str(info.value)
    assert "refused every key offered" in message
    assert str(wrong) in message and "SHA256:" in message
    assert "authorized_keys" in message
    assert _no_new_sessions(sshd, before)


def test_missing_identity_file(manager: Manager, sshd, forward, tmp_path: Path) -> None:
    with pytest.raises(AuthenticationError, match="does not exist"):
        manager.open(_line(sshd, *forward, key=tmp_path / "nope"))


def test_agent_key_logs_in(
    manager: Manager, sshd, forward, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = shutil.which("ssh-agent")
    # Not a platform limit: openssh-client is part of the README's setup.
    assert agent is not None, "ssh-agent is missing: apt-get install openssh-client"
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen([agent, "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        assert clients.wait_until(sock.exists, 5)
        env = {"SSH_AUTH_SOCK": str(sock), "PATH": "/usr/bin:/bin"}
        subprocess.run(["ssh-add", "-q", str(sshd.client_key)], env=env, check=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        monkeypatch.setenv("HOME", str(tmp_path))  # no default keys to fall back on
        line = _keyless_line(sshd, forward)
        with manager.open(line) as t:
            assert t.state == "up"
    finally:
        proc.terminate()
        proc.wait(10)


def test_default_identity_file_logs_in(
    manager: Manager, sshd, forward, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dot_ssh = tmp_path / ".ssh"
    dot_ssh.mkdir()
    shutil.copy(sshd.client_key, dot_ssh / "id_ed25519")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    line = _keyless_line(sshd, forward)
    with manager.open(line) as t:
        assert t.state == "up"


def test_no_key_at_all(
    manager: Manager, sshd, forward, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    line = _keyless_line(sshd, forward)
    with pytest.raises(AuthenticationError, match="no key to log in"):
        manager.open(line)


def test_port_in_use_fails_the_call_and_leaves_nothing(
    manager: Manager, sshd, targets, taken_port: int
) -> None:
    port = taken_port
    free = free_port()
    before = set(sshd.session_pids())
    line = sshd.line(
        "-L",
        f"{free}:{targets.host}:{targets.echo}",
        "-L",
        f"127.0.0.1:{port}:{targets.host}:{targets.echo}",
    )
    with pytest.raises(ForwardError) as info:
        manager.open(line)
    assert f"127.0.0.1 port {port}" in str(info.value)
    assert "already listens there" in str(info.value)
    # ExitOnForwardFailure: the forward that did bind was undone too.
    assert clients.port_is_closed("127.0.0.1", free)
    assert _no_new_sessions(sshd, before)
    assert manager.tunnels() == []


def test_exit_on_forward_failure_no_keeps_the_other_forwards(
    manager: Manager, sshd, targets, taken_port: int
) -> None:
    line = sshd.line(
        "-o",
        "ExitOnForwardFailure=no",
        "-L",
        f"127.0.0.1:{taken_port}:{targets.host}:{targets.echo}",
        "-L",
        f"0:{targets.host}:{targets.echo}",
    )
    with manager.open(line) as t:
        failed, good = t.forwards
        assert t.state == "up"
        assert failed.state == "failed"
        assert f"127.0.0.1 port {taken_port}" in (failed.error or "")
        assert good.state == "up"
        assert clients.echo_roundtrip("127.0.0.1", good.listen_port, b"ok", 10) == b"ok"


def test_connection_refused(manager: Manager, sshd, forward) -> None:
    port = free_port()
    line = shlex.join(["-p", str(port), *forward, "nobody@127.0.0.1"])
    with pytest.raises(ConnectError) as info:
        manager.open(line)
    assert f"127.0.0.1 port {port} refused" in str(info.value)
    assert "(-p)" in str(info.value)


def test_unresolvable_host(manager: Manager, forward) -> None:
    with pytest.raises(
        ConnectError, match=r"cannot resolve host 'no-such-host\.invalid'"
    ):
        manager.open(["-o", "ConnectTimeout=5", *forward, "no-such-host.invalid"])


def test_unreachable_host_times_out(manager: Manager, isolated, forward) -> None:
    # Routed into the rig's own link, owned by nobody: the SYN goes unanswered.
    silent = isolated.silent_addr
    line = shlex.join(["-o", "ConnectTimeout=1", *forward, f"nobody@{silent}"])
    with pytest.raises(ConnectError) as info:
        manager.open(line)
    assert f"{silent} port 22" in str(info.value)
    assert "timed out after 1 s" in str(info.value)


@pytest.fixture
def not_ssh() -> Iterator[int]:
    """A TCP server that answers like a web server, not an SSH server."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    server.close()
    thread.join(5)


def test_not_an_ssh_server(manager: Manager, not_ssh: int, forward) -> None:
    line = shlex.join(
        ["-p", str(not_ssh), "-o", "ConnectTimeout=5", *forward, "u@127.0.0.1"]
    )
    with pytest.raises(ConnectError, match="did not answer as an SSH server"):
        manager.open(line)


# A caller that opens a tunnel to a port that is no SSH server, with the
# engine given (argv[2]), and with logging left alone or nbtunnel's logged at
# DEBUG to stdout (argv[3]).
PARAMIKO_LOG_CALLER = """
import logging, sys
from nbtunnel import ConnectError, Manager
if sys.argv[3] == "debug":
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logging.getLogger("nbtunnel").addHandler(handler)
    logging.getLogger("nbtunnel").setLevel(logging.DEBUG)
manager = Manager(engine=sys.argv[2])
try:
    manager.open(sys.argv[1])
except ConnectError as exc:
    print("refused:", exc)
manager.close()
"""


@pytest.mark.parametrize("logging_", ["untouched", "debug"])
@pytest.mark.parametrize("engine", ["inline", "process"])
def test_paramikos_records_go_under_nbtunnels_logger(
    not_ssh: int, forward, engine: str, logging_: str
) -> None:
    # paramiko logs its failure ("Exception (client): Error reading SSH
    # protocol banner" and a traceback) at ERROR on a logger without a
    # handler: Python's last resort printed it on stderr, into a notebook
    # cell, above nbtunnel's own error (issue 20, item 8).
    line = shlex.join(["-p", str(not_ssh), *forward, "u@127.0.0.1"])
    ran = subprocess.run(
        [sys.executable, "-c", PARAMIKO_LOG_CALLER, line, engine, logging_],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr == ""
    assert "refused:" in ran.stdout and "did not answer as an SSH server" in ran.stdout
    said = [row for row in ran.stdout.splitlines() if "protocol banner" in row]
    if logging_ == "untouched":
        assert said == [ran.stdout.splitlines()[-1]]  # only the error itself
        return
    # Whoever logs nbtunnel at DEBUG still sees what paramiko said, under
    # nbtunnel's name (the engine's records as the engine's), at DEBUG.
    origin = "nbtunnel.paramiko" if engine == "inline" else "nbtunnel.engine.paramiko"
    records = [row for row in said if row.startswith(f"DEBUG {origin} ")]
    assert any("Exception (client)" in row for row in records), ran.stdout


def test_bad_line_fails_before_connecting(manager: Manager) -> None:
    with pytest.raises(SpecError, match="'9000:db'"):
        manager.open("-L 9000:db user@host")
    with pytest.raises(SpecError, match="no forward"):
        manager.open("user@host")


def test_unsupported_cipher(manager: Manager, sshd, forward) -> None:
    with pytest.raises(ConnectError, match=r"cipher 'chacha20-poly1305@openssh\.com'"):
        manager.open(_line(sshd, "-c", "chacha20-poly1305@openssh.com", *forward))


def test_a_failing_proxycommand_says_why(
    manager: Manager, sshd, forward, tmp_path: Path
) -> None:
    command = "sh -c 'echo no route to the moon >&2; exit 3'"
    with pytest.raises(ConnectError) as info:
        manager.open(_line(sshd, "-o", f"ProxyCommand={command}", *forward))
    text = str(info.value)
    assert "exited with status 3" in text
    assert "no route to the moon" in text
    assert manager.tunnels() == []


def test_a_proxycommand_that_speaks_no_ssh_is_stopped(
    manager: Manager, sshd, forward, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    # Stays up and writes garbage: the handshake fails and the proxy is ended.
    command = f"sh -c 'echo $$ > {pidfile}; echo garbage; exec sleep 600'"
    with pytest.raises(ConnectError, match="SSH"):
        manager.open(
            _line(
                sshd,
                "-o",
                f"ProxyCommand={command}",
                "-o",
                "ConnectTimeout=3",
                *forward,
            )
        )
    pid = int(pidfile.read_text())
    assert clients.wait_until(lambda: not Path(f"/proc/{pid}").exists(), 5)
