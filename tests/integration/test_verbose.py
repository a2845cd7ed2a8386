"""-v, -vv and -vvv against a real sshd: the CLI's debug lines on stderr, and
the API's log records, for the tunnel that asked and no other.

What each level shows is what ``ssh -v`` helps with when a connection fails:
the addresses tried, the server's version, what the handshake agreed, the
host key and where it was found, each login method and key and its answer,
each forward and the server's answer; then the config lines and channel
opens (-vv), and paramiko's own debug log (-vvv).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from nbtunnel import AuthenticationError, Manager

from tests.rig import clients, procs, users
from tests.rig.sshd import start_sshd

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _fingerprint(pub: Path) -> str:
    blob = base64.b64decode(pub.read_text().split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip(
        "="
    )


def _serve(*args: str) -> tuple[str, str, int]:
    """The CLI up until its forwards are, then Ctrl-C: (stdout, stderr, -L port)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbtunnel", *args],
        preexec_fn=procs.interruptible,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        seen = []
        while "press Ctrl-C to stop" not in (line := proc.stdout.readline()):
            assert line, (seen, proc.communicate(timeout=15)[1])
            seen.append(line)
        ports = re.findall(r"-L this machine 127\.0\.0\.1:(\d+)", "".join(seen))
        port = int(ports[0]) if ports else 0
        if port:
            # A connection through the -L: a channel open, for -vv.
            assert clients.echo_roundtrip("127.0.0.1", port, b"v", 10) == b"v"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    return "".join(seen) + out, err, port


def _failing(*args: str) -> tuple[int, str, str]:
    ran = subprocess.run(
        [sys.executable, "-m", "nbtunnel", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
    )
    return ran.returncode, ran.stdout, ran.stderr


def test_v_shows_address_versions_kex_host_key_login_and_forwards(
    sshd, targets, here
) -> None:
    remote = f"127.0.0.1:0:127.0.0.1:{here.echo}"
    out, err, port = _serve(
        "-v",
        *sshd.args(),
        "-L",
        f"0:{targets.host}:{targets.echo}",
        "-R",
        remote,
        sshd.destination,
    )
    print(err)
    lines = err.splitlines()
    assert lines and all(line.startswith("debug1: ") for line in lines), err
    host, p = sshd.host, sshd.port
    assert f"debug1: Connecting to {host} [{host}] port {p}." in lines
    assert "debug1: Connection established." in lines
    assert any(
        re.fullmatch(
            r"debug1: Remote protocol version 2\.0, remote software version OpenSSH_.+",
            line,
        )
        for line in lines
    ), err
    assert "debug1: kex: algorithm: unknown" not in lines
    assert any(line.startswith("debug1: kex: algorithm: ") for line in lines)
    assert "debug1: kex: host key algorithm: ssh-ed25519" in lines
    for way in ("server->client", "client->server"):
        assert (
            f"debug1: kex: {way} cipher: aes128-gcm@openssh.com MAC: <implicit> "
            "compression: none"
        ) in lines
    print_ = _fingerprint(sshd.host_key_pub)
    assert f"debug1: Server host key: ssh-ed25519 {print_}" in lines
    assert (
        f"debug1: Host '[{host}]:{p}' is known and matches the ED25519 host key."
        in lines
    )
    assert f"debug1: Found key in {sshd.known_hosts}:1" in lines
    key = f"{sshd.client_key} (ED25519 {_fingerprint(sshd.client_key_pub)})"
    assert "debug1: Next authentication method: publickey" in lines
    assert f"debug1: Offering public key: {key}" in lines
    assert f"debug1: Server accepted key: {sshd.client_key}" in lines
    assert (
        f"debug1: Authenticated to {host} ([{host}]:{p}) as '{sshd.user}' "
        'using "publickey".'
    ) in lines
    assert (
        f"debug1: Local forwarding listening on 127.0.0.1 port {port}: "
        f"the server connects to {targets.host}:{targets.echo}"
    ) in lines
    allocated = re.search(r"Allocated port (\d+)", out)
    assert allocated, out
    assert "debug1: Requesting remote forward: the server to listen on 127.0.0.1:0" in (
        lines
    )
    assert (
        f"debug1: remote forward success: the server listens on "
        f"127.0.0.1:{allocated.group(1)}"
    ) in lines
    # The debug lines are stderr's; stdout is as without -v.
    assert "debug" not in out


def test_v_goes_on_while_the_cli_runs_a_reconnect_says_its_steps(
    fresh_sshd, targets
) -> None:
    server = fresh_sshd
    args = [*server.args(), "-v", "-L", f"0:{targets.host}:{targets.echo}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbtunnel", *args, server.destination],
        preexec_fn=procs.interruptible,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        while "press Ctrl-C to stop" not in (line := proc.stdout.readline()):
            assert line
        server.restart()
        while not (line := proc.stdout.readline()).startswith("reconnected after"):
            assert line
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines = err.splitlines()
    target = f"{server.user}@{server.host}:{server.port}"
    assert f"debug1: Reconnecting to {target} (try 1)" in lines, err
    after = lines[lines.index(f"debug1: Reconnecting to {target} (try 1)") :]
    assert (
        f"debug1: Connecting to {server.host} [{server.host}] port {server.port}."
        in after
    )
    assert sum(line.startswith("debug1: Authenticated to") for line in lines) == 2


def test_without_v_none_of_it(sshd, targets) -> None:
    out, err, _ = _serve(
        *sshd.args(), "-L", f"0:{targets.host}:{targets.echo}", sshd.destination
    )
    assert err == ""
    assert "debug" not in out


@pytest.mark.parametrize("flag", ["-vv", "-vvv"])
def test_vv_adds_config_known_hosts_and_channels_vvv_paramiko(
    flag: str, sshd, targets, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    config.write_text(f"Host {sshd.host}\n  ServerAliveCountMax 4\n")
    known = tmp_path / "known_hosts"
    _out, err, _ = _serve(
        flag,
        "-F", str(config),
        "-p", str(sshd.port),
        "-i", str(sshd.client_key),
        "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={known}",
        "-o", "StrictHostKeyChecking=accept-new",
        "-L", f"0:{targets.host}:{targets.echo}",
        sshd.destination,
    )  # fmt: skip
    print(err)
    lines = err.splitlines()
    name = f"[{sshd.host}]:{sshd.port}"
    assert f"debug2: Reading configuration data {config}" in lines
    assert f"debug2: {config} line 1: Applying options for {sshd.host}" in lines
    assert f"debug2: {config} line 2: ServerAliveCountMax 4" in lines
    assert any(line.startswith("debug2: ciphers offered: aes128-gcm") for line in lines)
    # A host key seen for the first time: said so, and where it was recorded.
    assert (
        f"debug1: Host key of '{name}' is not known (StrictHostKeyChecking accept-new)"
    ) in lines
    assert (
        f"debug1: Permanently added '{name}' (ED25519) to the list of known hosts "
        f"({known})."
    ) in lines
    where = f"{targets.host}:{targets.echo}"
    assert any(
        line.startswith(f"debug2: channel open: direct-tcpip to {where} for 127.0.0.1")
        for line in lines
    ), err
    assert f"debug2: channel open to {where} confirmed" in lines
    paramiko = [line for line in lines if line.startswith("debug3: ")]
    if flag == "-vv":
        assert paramiko == []
    else:
        assert "debug3: Authentication (publickey) successful!" in paramiko, err
        assert any(line.startswith("debug3: Kex: ") for line in paramiko)


def test_v_with_a_refused_key_shows_each_method_tried(rig, targets, tmp_path) -> None:
    if not users.can_create():
        pytest.skip(users.SKIP_REASON)
    wrong = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True
    )
    banner = tmp_path / "banner"
    banner.write_text("Authorized use only.\n")
    options = {
        "UsePAM": "yes",
        "PasswordAuthentication": "yes",
        "KbdInteractiveAuthentication": "yes",
        "Banner": str(banner),
    }
    with users.login_user() as login, start_sshd(rig.netns, options=options) as s:
        status, out, err = _failing(
            "-v",
            "-p", str(s.port),
            "-i", str(wrong),
            "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={s.known_hosts}",
            "-L", f"0:{targets.host}:{targets.echo}",
            f"{login.name}@{s.host}",
        )  # fmt: skip
    print(err)
    assert status == 1
    assert "Traceback" not in err
    lines = err.splitlines()
    assert "debug1: banner: Authorized use only." in lines
    methods = [
        line.removeprefix("debug1: Next authentication method: ")
        for line in lines
        if line.startswith("debug1: Next authentication method: ")
    ]
    assert methods == ["publickey", "keyboard-interactive", "password"]
    assert f"debug1: Offering public key: {wrong} (ED25519 " in err
    assert f"debug1: Server refused key: {wrong}" in lines
    assert "debug1: publickey: nothing more to try" in lines
    assert (
        "debug1: the server asks for keyboard-interactive, but nobody can answer "
        "questions here"
    ) in lines
    assert "debug1: No more authentication methods to try." in lines
    # The one line that says why, last.
    assert lines[-1].startswith(f"nbtunnel: {login.name}@{s.host}:{s.port} refused")
    assert out == ""


# -- the API: logging, for the tunnel that asked --------------------------------


def _steps(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if hasattr(r, "verbosity")]


def test_logging_has_the_steps_of_the_v_tunnel_and_not_of_the_other(
    manager: Manager, sshd, targets, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="nbtunnel")
    forward = f"0:{targets.host}:{targets.echo}"
    quiet = manager.open(sshd.line("-o", "ServerAliveInterval=7", "-L", forward))
    told = manager.open("-v " + sshd.line("-L", forward))
    again = manager.open(sshd.line("-o", "ServerAliveInterval=8", "-L", forward))
    try:
        steps = _steps(caplog)
        assert steps, caplog.text
        assert {r.tunnel for r in steps} == {told.id}  # type: ignore[attr-defined]
        assert {r.name for r in steps} == {"nbtunnel.engine.verbose"}
        assert {r.levelno for r in steps} == {logging.INFO}  # -vv's are DEBUG
        text = [r.getMessage() for r in steps]
        assert (
            f"{told.name}: Connecting to {sshd.host} [{sshd.host}] port {sshd.port}."
            in text
        )
        assert any("Server host key: ssh-ed25519 SHA256:" in t for t in text)
        assert any("Authenticated to" in t for t in text)
        assert not any(
            "Connecting to" in r.getMessage() for r in caplog.records if r not in steps
        )
    finally:
        for t in (quiet, told, again):
            t.stop()


def test_vvv_logs_paramikos_records_at_debug_for_that_tunnel(
    manager: Manager, sshd, targets, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="nbtunnel")
    line = "-vvv " + sshd.line(
        "-o", "ServerAliveInterval=9", "-L", f"0:{targets.host}:{targets.echo}"
    )
    with manager.open(line) as t:
        steps = _steps(caplog)
    levels = {r.verbosity: r.levelno for r in steps}  # type: ignore[attr-defined]
    assert levels == {1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}
    paramiko = [r for r in steps if r.verbosity == 3]  # type: ignore[attr-defined]
    assert {r.name for r in paramiko} == {"nbtunnel.engine.paramiko"}
    assert {r.tunnel for r in paramiko} == {t.id}  # type: ignore[attr-defined]
    assert any(
        "Authentication (publickey) successful" in r.getMessage() for r in paramiko
    )


def test_a_failed_login_logs_what_was_tried(
    manager: Manager, sshd, targets, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="nbtunnel")
    wrong = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True
    )
    line = [
        "-v",
        "-p", str(sshd.port),
        "-i", str(wrong),
        "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={sshd.known_hosts}",
        "-L", f"0:{targets.host}:{targets.echo}",
        sshd.destination,
    ]  # fmt: skip
    with pytest.raises(AuthenticationError):
        manager.open(line)
    text = [r.getMessage() for r in _steps(caplog)]
    assert any(t.endswith(f"Server refused key: {wrong}") for t in text), text
    assert any(t.endswith("No more authentication methods to try.") for t in text)
