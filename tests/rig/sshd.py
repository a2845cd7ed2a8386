"""A real OpenSSH sshd of the rig's own: own config, host key, client key and port."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from . import procs
from .netns import Netns, make_tempdir

SSHD = "/usr/sbin/sshd"  # absolute: sshd refuses to re-exec itself from a relative path
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
PRIVSEP_DIR = Path("/run/sshd")
START_TIMEOUT = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (racy by nature; callers retry)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@functools.lru_cache(maxsize=1)
def sshd_version() -> tuple[int, int]:
    # `sshd -V` exists only from 9.x; older ones print the version in the usage text.
    r = subprocess.run([SSHD, "-V"], capture_output=True, text=True, timeout=10)
    m = re.search(r"OpenSSH_(\d+)\.(\d+)", r.stdout + r.stderr)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )


def locked_copy(key: Path, dest: Path, passphrase: str) -> Path:
    """A copy of a client key at dest, encrypted with passphrase."""
    shutil.copyfile(key, dest)
    dest.chmod(0o600)
    subprocess.run(
        [SSH_KEYGEN, "-q", "-p", "-P", "", "-N", passphrase, "-f", str(dest)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return dest


def _raise_nofile(pid: int) -> None:
    # Many-connection tests open a channel (and a socket) per connection in
    # sshd's per-connection child, which inherits this limit.
    import resource  # POSIX-only: imported here so that the rig loads everywhere

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(OSError, ValueError):
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class SshServer:
    """A running sshd, built by start_sshd(); close() or the context manager ends it."""

    host: str
    host6: str | None
    port: int
    user: str
    client_key: Path
    client_key_pub: Path
    host_key_pub: Path
    known_hosts: Path
    netns: str | None
    pid: int
    log: Path
    config: Path
    workdir: Path
    _ns: Netns | None = field(default=None, repr=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _owns_workdir: bool = field(default=True, repr=False)

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}"

    @property
    def this_machine(self) -> str | None:
        """This machine's address as the server's namespace reaches it (a
        connection from there is not a loopback one); None without one."""
        return self._ns.host_addr if self._ns is not None else None

    def args(self) -> list[str]:
        """ssh-style option tokens that log in to this server."""
        return [
            "-p",
            str(self.port),
            "-i",
            str(self.client_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
        ]

    def line(self, *forward_tokens: str) -> str:
        """One ssh-style command line: options, forward tokens, user@host."""
        return shlex.join([*self.args(), *forward_tokens, self.destination])

    def session_pids(self) -> list[int]:
        """Live per-connection sshd processes (children of the listener)."""
        if self._proc is None or self._proc.poll() is not None:
            return []
        return procs.children(self.pid)

    def ns_argv(self, argv: Sequence[str]) -> list[str]:
        """argv wrapped to run where this sshd runs."""
        return self._ns.exec_argv(argv) if self._ns is not None else list(argv)

    def exec_in_ns(
        self, cmd: Sequence[str], *, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run cmd in the server's namespace (plainly in loopback mode).

        Output is captured as text; check=True raises on a non-zero exit.
        """
        return subprocess.run(
            self.ns_argv(cmd),
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no sshd log)"
        return "\n".join(text.splitlines()[-lines:])

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _launch(self) -> None:
        with open(self.log, "ab") as log:
            log.write(f"--- rig: starting sshd at {time.time():.3f}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.ns_argv([SSHD, "-D", "-e", "-f", str(self.config)]),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self.pid = self._proc.pid
        _raise_nofile(self.pid)
        # sshd writes its PidFile only once listening; record it now for sweep_stale()
        (self.workdir / "sshd.pid").write_text(f"{self.pid}\n")
        expected = {(self.host, self.port)}
        if self.host6:
            expected.add((self.host6, self.port))
        deadline = time.monotonic() + START_TIMEOUT
        while not expected <= procs.listening_tcp(self.pid):
            if self._proc.poll() is not None:
                self._proc.wait()
                raise SshdStartError(
                    f"sshd exited with {self._proc.returncode} before listening on "
                    f"{sorted(expected)}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise SshdStartError(
                    f"sshd did not listen on {sorted(expected)} within "
                    f"{START_TIMEOUT:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.01)

    def stop(self, *, hard: bool = False) -> None:
        """End the listener and every session below it. hard=True: SIGKILL all."""
        if self._proc is not None:
            procs.stop_tree(self._proc, hard=hard)

    def restart(self, *, hard: bool = True) -> None:
        """Kill every process of this sshd (a crash, by default) and start it again.

        Same config, keys and port, so clients can reconnect to the same address.
        """
        self.stop(hard=hard)
        self._launch()

    def close(self) -> None:
        """stop() and remove the temp dir (if start_sshd made it)."""
        self.stop()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SshServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SshdStartError(RuntimeError):
    pass


def _ensure_privsep_dir() -> None:
    # Root sshd chroots its pre-auth child into /run/sshd. Left in place
    # afterwards: it is the system's standard location, and a concurrent rig
    # may be using it.
    if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        PRIVSEP_DIR.chmod(0o755)


def _config(
    workdir: Path,
    listen: Sequence[str],
    port: int,
    host_key: Path,
    options: Mapping[str, Any],
) -> str:
    opts: list[tuple[str, Any]] = [
        *(("ListenAddress", a) for a in listen),
        ("Port", port),
        ("HostKey", host_key),
        ("PidFile", workdir / "sshd.pid"),
        ("AuthorizedKeysFile", workdir / "authorized_keys"),
        ("StrictModes", "no"),
        ("UsePAM", "no"),
        ("PasswordAuthentication", "no"),
        ("KbdInteractiveAuthentication", "no"),
        ("PubkeyAuthentication", "yes"),
        ("AllowTcpForwarding", "yes"),
        ("AllowStreamLocalForwarding", "yes"),
        ("GatewayPorts", "clientspecified"),
        ("PermitRootLogin", "prohibit-password"),
        ("MaxStartups", "1000:30:1000"),
        ("MaxSessions", 100),
        ("LogLevel", "VERBOSE"),
        ("Subsystem", "sftp internal-sftp"),
        ("ClientAliveInterval", 0),
        ("UseDNS", "no"),
        ("PrintMotd", "no"),
        ("PrintLastLog", "no"),
    ]
    if sshd_version() >= (9, 8):
        # 9.8+ blocks source addresses whose clients drop connections, which
        # kill/reconnect tests do on purpose.
        opts.append(("PerSourcePenalties", "no"))
    # sshd takes the first value of a keyword, so a test's own go first.
    lines = [*options.items(), *((k, v) for k, v in opts if k not in options)]
    return "".join(f"{k} {v}\n" for k, v in lines)


def start_sshd(
    netns: Netns | None = None,
    *,
    port: int | None = None,
    workdir: Path | None = None,
    inner: bool = False,
    options: Mapping[str, Any] | None = None,
) -> SshServer:
    """Start an sshd for the current user.

    netns given: sshd runs inside it, listening on the namespace's veth
    addresses (v4 and v6), or with ``inner`` on the namespace's own
    127.0.0.1 only, where nothing outside the namespace reaches it (a host
    behind a jump host). Otherwise it listens on 127.0.0.1 on a free port.
    workdir: where keys, config and log go (a fresh temp dir if None; removed
    by close() only if made here). options: sshd_config keywords that replace
    the rig's (``{"UsePAM": "yes"}``, say).
    """
    owns = workdir is None
    wd = make_tempdir("sshd") if workdir is None else workdir
    wd.mkdir(parents=True, exist_ok=True)
    try:
        return _start(netns, port, wd, owns, inner, options or {})
    except BaseException:
        if owns:
            shutil.rmtree(wd, ignore_errors=True)
        raise


def _start(
    netns: Netns | None,
    port: int | None,
    wd: Path,
    owns: bool,
    inner: bool,
    options: Mapping[str, Any],
) -> SshServer:
    _ensure_privsep_dir()
    host_key = wd / "host_ed25519"
    client_key = wd / "client_ed25519"
    _keygen(host_key, "nbtunnel-rig-host")
    _keygen(client_key, "nbtunnel-rig-client")
    client_pub = client_key.with_name(client_key.name + ".pub")
    host_pub = host_key.with_name(host_key.name + ".pub")
    shutil.copyfile(client_pub, wd / "authorized_keys")
    (wd / "authorized_keys").chmod(0o600)
    import pwd  # POSIX-only: imported here so that the rig loads everywhere

    user = pwd.getpwuid(os.geteuid()).pw_name
    config = wd / "sshd_config"
    if netns is not None and inner:
        host, host6 = "127.0.0.1", None
        listen = [host]
        names = [host]
    elif netns is not None:
        host, host6 = netns.ns_addr, netns.ns_addr6
        listen = [host, host6]
        names = [host, host6]
    else:
        host, host6 = "127.0.0.1", None
        listen = [host]
        names = [host, "localhost"]

    # In loopback mode the free port can be taken before sshd binds it: retry.
    attempts = 1 if (netns is not None or port is not None) else 3
    for attempt in range(attempts):
        p = port if port is not None else (netns.next_port() if netns else free_port())
        config.write_text(_config(wd, listen, p, host_key, options))
        key_type, key_b64 = host_pub.read_text().split()[:2]
        (wd / "known_hosts").write_text(
            ",".join(f"[{n}]:{p}" for n in names) + f" {key_type} {key_b64}\n"
        )
        t = subprocess.run(
            [SSHD, "-t", "-f", str(config)], capture_output=True, text=True, timeout=30
        )
        if t.returncode != 0:
            raise SshdStartError(f"sshd -t rejected {config}:\n{t.stderr}")
        server = SshServer(
            host=host,
            host6=host6,
            port=p,
            user=user,
            client_key=client_key,
            client_key_pub=client_pub,
            host_key_pub=host_pub,
            known_hosts=wd / "known_hosts",
            netns=netns.name if netns else None,
            pid=0,
            log=wd / "sshd.log",
            config=config,
            workdir=wd,
            _ns=netns,
            _owns_workdir=owns,
        )
        try:
            server._launch()
        except SshdStartError as e:
            if attempt + 1 < attempts and "Bind to port" in str(e):
                continue
            raise
        return server
    raise AssertionError("unreachable")
