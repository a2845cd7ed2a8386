"""%tunnel in a real kernel (jupyter_client) against the rig's real sshd.

The test process is the kernel's outside world: it connects to the ports the
kernel's forwards open, and asks the server's side whether -R ports listen.
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.rig import clients, procs, users
from tests.rig.sshd import start_sshd

from .conftest import Kernel, Ran

pytestmark = [pytest.mark.integration, pytest.mark.notebook]


def _open(kernel: Kernel, line: str, var: str = "t") -> list[int]:
    ran = kernel.run(f"{var} = %tunnel {line}")
    assert ran.ok, ran.text
    return kernel.value(f"[f.listen_port for f in {var}.forwards]")


def _logins(sshd) -> int:
    return sshd.log.read_text(errors="replace").count("Accepted publickey")


def test_open_rerun_list_add_cancel_and_stop(kernel: Kernel, sshd, targets) -> None:
    assert kernel.run("%load_ext nbtunnel").ok
    assert kernel.run("%load_ext nbtunnel").ok  # twice is harmless
    logins = _logins(sshd)
    line = sshd.line("-L", f"0:{targets.host}:{targets.echo}")
    (port,) = _open(kernel, line)
    assert clients.echo_roundtrip("127.0.0.1", port, b"from outside", 10) == (
        b"from outside"
    )
    # The same cell again: the same tunnel, the same port, no second tunnel.
    assert _open(kernel, line, "t2") == [port]
    assert kernel.value("t2 is t and len(__import__('nbtunnel').tunnels())") == 1

    listed = kernel.run("%tunnel")
    assert listed.ok
    assert f"127.0.0.1:{port}" in listed.text
    assert f"the server connects to {targets.host}:{targets.echo}" in listed.text
    assert "<table" in listed.html()

    # Same destination and options: the forward joins the live connection.
    more = sshd.line("-L", f"0:{targets.host}:{targets.http}")
    ports = _open(kernel, more, "t3")
    assert len(ports) == 2 and ports[0] == port
    assert kernel.value("t3 is t and len(__import__('nbtunnel').tunnels())") == 1
    http_port = ports[1]
    # A tunnel of its own name still rides the same SSH connection.
    named = sshd.line("-L", f"0:{targets.host}:{targets.echo}")
    (other,) = _open(kernel, f"--name other {named}", "t4")
    assert kernel.value("t4 is not t and len(__import__('nbtunnel').tunnels())") == 2
    assert clients.echo_roundtrip("127.0.0.1", other, b"shared", 10) == b"shared"
    # Three %tunnel lines, one login on the server.
    assert _logins(sshd) - logins == 1

    name = kernel.value("t.name")  # its destination's host: no --name
    cancelled = kernel.run(f"%tunnel -KL {port}")
    assert cancelled.ok
    # One line, as ssh confirms a ~C cancel: the forward and the tunnel by
    # the names the table gives them.
    assert f"{name} " in kernel.run("%tunnel").text
    assert cancelled.text == (
        f"cancelled -L 0:{targets.host}:{targets.echo} on tunnel {name}"
        f" (it listened on this machine 127.0.0.1:{port})\n"
    )
    assert clients.wait_until(lambda: clients.port_is_closed("127.0.0.1", port), 5)
    status, _ = clients.http_get("127.0.0.1", http_port, "/bytes/10")
    assert status == 200

    assert kernel.run("%tunnel stop all").ok
    assert clients.wait_until(lambda: clients.port_is_closed("127.0.0.1", http_port), 5)
    assert kernel.value("len(__import__('nbtunnel').tunnels())") == 0


def test_each_cancel_says_what_it_cancelled(
    kernel: Kernel, sshd, targets, here
) -> None:
    assert kernel.run("%load_ext nbtunnel").ok
    line = sshd.line("-R", f"127.0.0.1:0:127.0.0.1:{here.echo}", "-D", "127.0.0.1:0")
    assert kernel.run(f"t = %tunnel --name web {line}").ok
    remote, socks = kernel.value("[f.listen_port for f in t.forwards]")
    said = kernel.run(f"%tunnel -KR {remote}")
    assert said.ok and said.text == (
        f"cancelled -R 127.0.0.1:0:127.0.0.1:{here.echo} on tunnel web"
        f" (it listened on the server 127.0.0.1:{remote})\n"
    )
    assert clients.wait_until(
        lambda: clients.on_server(sshd, "closed", "127.0.0.1", remote)["closed"], 5
    )
    said = kernel.run(f"%tunnel -KD 127.0.0.1:{socks}")
    assert said.ok and said.text == (
        "cancelled -D 127.0.0.1:0 on tunnel web"
        f" (it listened on this machine 127.0.0.1:{socks})\n"
    )
    assert clients.wait_until(lambda: clients.port_is_closed("127.0.0.1", socks), 5)
    # Cancelled once: a second time is an error, said in one line.
    again = kernel.run(f"%tunnel -KD {socks}")
    assert again.reply["ename"] == "UsageError"
    assert f"no -D forward listens on {socks}" in again.reply["evalue"]


def test_errors_are_one_line_without_a_traceback(kernel: Kernel, sshd, targets) -> None:
    assert kernel.run("%load_ext nbtunnel").ok
    bad = kernel.run("%tunnel -L 9000:db user@host")
    assert not bad.ok
    assert bad.reply["ename"] == "UsageError"
    assert "'9000:db'" in bad.reply["evalue"]
    assert "Traceback" not in bad.text and "File " not in bad.text
    refused = kernel.run(f"%tunnel -p {targets.refused_port} -L 0:x:1 u@127.0.0.1")
    assert not refused.ok and refused.reply["ename"] == "UsageError"
    assert "refused" in refused.reply["evalue"]
    assert "paramiko" not in refused.text.lower()
    assert "Traceback" not in refused.text
    # -v shows the steps, never a traceback: the error is the same one line.
    verbose = kernel.run("%tunnel -v -L 9000:db user@host")
    assert verbose.reply["ename"] == "UsageError"
    assert "'9000:db'" in verbose.reply["evalue"]
    assert "Traceback" not in verbose.text and "File " not in verbose.text
    nothing = kernel.run("%tunnel stop nosuch")
    assert "no tunnel named 'nosuch'" in nothing.reply["evalue"]
    cancel = kernel.run("%tunnel -KR 1234")
    assert "no -R forward listens on 1234" in cancel.reply["evalue"]


def test_v_shows_the_steps_in_the_cell_as_ssh_v_does(
    kernel: Kernel, sshd, targets
) -> None:
    assert kernel.run("%load_ext nbtunnel").ok
    forward = f"0:{targets.host}:{targets.echo}"
    quiet = kernel.run(f"q = %tunnel {sshd.line('-L', forward)}")
    assert quiet.ok and "debug" not in quiet.text, quiet.text
    line = sshd.line("-o", "ServerAliveInterval=7", "-L", forward)
    ran = kernel.run(f"t = %tunnel -v {line}")
    assert ran.ok, ran.text
    shown = ran.text.splitlines()
    host, port = sshd.host, sshd.port
    for expected in (
        f"debug1: Connecting to {host} [{host}] port {port}.",
        "debug1: kex: host key algorithm: ssh-ed25519",
        f"debug1: Host '[{host}]:{port}' is known and matches the ED25519 host key.",
        f"debug1: Found key in {sshd.known_hosts}:1",
        "debug1: Next authentication method: publickey",
        f"debug1: Server accepted key: {sshd.client_key}",
    ):
        assert expected in shown, ran.text
    assert any(
        s.startswith("debug1: Server host key: ssh-ed25519 SHA256:") for s in shown
    )
    assert any(s.startswith("debug1: Local forwarding listening on") for s in shown)
    # The same line again connects nothing, and says so.
    again = kernel.run(f"t2 = %tunnel -v {line}")
    assert again.ok
    assert "open already (the same line): nothing to connect" in again.text
    assert "Connecting to" not in again.text
    # A failing one: its steps, then the one line.
    wrong = kernel.run(f"%tunnel -v -p {targets.refused_port} -L 0:x:1 u@127.0.0.1")
    assert wrong.reply["ename"] == "UsageError"
    assert (
        f"debug1: connect to address 127.0.0.1 port {targets.refused_port}: "
        "Connection refused"
    ) in wrong.text
    assert "Traceback" not in wrong.text
    # Nothing after the cell: a later cell stays empty.
    after = kernel.run("import time; time.sleep(0.5)")
    assert after.ok and after.outputs == []


def test_a_fixed_port_held_elsewhere_names_the_holder(
    kernel: Kernel, sshd, targets
) -> None:
    assert kernel.run("%load_ext nbtunnel").ok
    port = clients.free_port()
    _open(
        kernel, "--name db " + sshd.line("-L", f"{port}:{targets.host}:{targets.echo}")
    )
    other = sshd.line(
        "-o", "ServerAliveInterval=7", "-L", f"{port}:{targets.host}:{targets.http}"
    )
    held = kernel.run(f"%tunnel {other}")
    assert not held.ok
    assert f"port {port}" in held.reply["evalue"]
    assert "tunnel 'db'" in held.reply["evalue"]


def test_events_go_to_the_display_not_into_cells(kernel: Kernel, sshd, targets) -> None:
    assert kernel.run("%load_ext nbtunnel").ok
    (port,) = _open(kernel, sshd.line("-L", f"0:{targets.host}:{targets.echo}"))
    for _ in range(3):
        clients.echo_roundtrip("127.0.0.1", port, b"x", 10)
    quiet = kernel.run("import time; time.sleep(0.5)")
    assert quiet.ok and quiet.outputs == []  # no thread printed into this cell
    shown = kernel.run("t")
    assert "recent events" in shown.text and "connection" in shown.text


def test_an_engine_killed_by_sigkill_is_said_and_the_line_opens_again(
    kernel: Kernel, sshd, targets
) -> None:
    # An OOM kill in a JupyterHub pod: %tunnel, the tunnel's display and its
    # events say the engine was killed by SIGKILL; running the cell again
    # starts a new engine (issue 20, item 6).
    assert kernel.run("%load_ext nbtunnel").ok
    line = sshd.line("-L", f"0:{targets.host}:{targets.echo}")
    (port,) = _open(kernel, line)
    engine = _engine_pid(kernel)
    os.kill(engine, signal.SIGKILL)  # the engine of this test's kernel
    assert procs.wait_gone(engine, 5)

    def said() -> Ran | None:
        ran = kernel.run("%tunnel")
        return ran if "killed by SIGKILL" in ran.text else None

    listed = clients.wait_until(said, 5)
    assert "failed" in listed.text and "killed by SIGKILL" in listed.html()
    shown = kernel.run("t")
    assert shown.text.count("killed by SIGKILL") >= 2, shown.text  # state and events
    assert clients.port_is_closed("127.0.0.1", port)
    quiet = kernel.run("import time; time.sleep(0.3)")
    assert quiet.ok and quiet.outputs == []  # said in the displays, not into cells
    (again,) = _open(kernel, line, "t2")
    assert _engine_pid(kernel) != engine
    assert clients.echo_roundtrip("127.0.0.1", again, b"again", 10) == b"again"
    assert "killed by SIGKILL" not in kernel.run("%tunnel").text


def _engine_pid(kernel: Kernel) -> int:
    pid = kernel.value("__import__('nbtunnel').default_manager().engine_pid")
    assert isinstance(pid, int)
    return pid


def _open_both(kernel: Kernel, sshd, targets, here) -> tuple[int, int, int]:
    assert kernel.run("%load_ext nbtunnel").ok
    local, remote = _open(
        kernel,
        sshd.line(
            "-L",
            f"0:{targets.host}:{targets.echo}",
            "-R",
            f"127.0.0.1:0:127.0.0.1:{here.echo}",
        ),
    )
    assert clients.on_server(sshd, "echo", "127.0.0.1", remote, 100)["ok"]
    return local, remote, _engine_pid(kernel)


def _released(sshd, local: int, remote: int, engine: int) -> None:
    assert clients.wait_until(lambda: clients.port_is_closed("127.0.0.1", local), 5)
    assert clients.wait_until(
        lambda: clients.on_server(sshd, "closed", "127.0.0.1", remote)["closed"], 5
    )
    assert clients.wait_until(lambda: not procs.is_alive(engine), 5)


def test_shutdown_releases_everything(kernel: Kernel, sshd, targets, here) -> None:
    local, remote, engine = _open_both(kernel, sshd, targets, here)
    kernel.km.shutdown_kernel(now=False)
    _released(sshd, local, remote, engine)


def test_restart_releases_everything(kernel: Kernel, sshd, targets, here) -> None:
    local, remote, engine = _open_both(kernel, sshd, targets, here)
    kernel.km.restart_kernel(now=False)
    _released(sshd, local, remote, engine)
    kernel.kc.wait_for_ready(timeout=60)
    # A fresh kernel: the extension loads again and works.
    _open_both(kernel, sshd, targets, here)


def test_sigkill_of_the_kernel_leaves_nothing(
    kernel: Kernel, sshd, targets, here
) -> None:
    local, remote, engine = _open_both(kernel, sshd, targets, here)
    os.kill(kernel.pid, signal.SIGKILL)
    _released(sshd, local, remote, engine)


def test_unload_stops_everything(kernel: Kernel, sshd, targets, here) -> None:
    local, remote, engine = _open_both(kernel, sshd, targets, here)
    assert kernel.run("%unload_ext nbtunnel").ok
    _released(sshd, local, remote, engine)
    gone = kernel.run("%tunnel")
    assert not gone.ok  # the magic left with the extension


def test_loading_the_extension_starts_the_engine_for_the_first_tunnel(
    kernel: Kernel, sshd, targets
) -> None:
    assert kernel.run("%load_ext nbtunnel").ok
    # Started in the background: the cell has returned, the engine follows.
    assert clients.wait_until(
        lambda: (
            kernel.value("__import__('nbtunnel').default_manager().engine_pid")
            is not None
        ),
        10,
    )
    engine = _engine_pid(kernel)
    assert engine in procs.engines(kernel.pid)
    local = _open(kernel, sshd.line("-L", f"0:{targets.host}:{targets.echo}"))[0]
    assert _engine_pid(kernel) == engine
    assert clients.echo_roundtrip("127.0.0.1", local, b"first") == b"first"
    assert kernel.run("%unload_ext nbtunnel").ok
    assert clients.wait_until(lambda: not procs.is_alive(engine), 5)


def test_unloading_while_the_engine_starts_leaves_no_engine(kernel: Kernel) -> None:
    assert kernel.run("%load_ext nbtunnel\n%unload_ext nbtunnel").ok
    kernel.run("import time; time.sleep(1)")
    assert procs.engines(kernel.pid) == []


def test_an_unknown_host_is_asked_in_the_notebook(
    kernel: Kernel, sshd, targets, tmp_path
) -> None:
    assert kernel.run("%load_ext nbtunnel").ok
    known = tmp_path / "kh"
    line = (
        f"-p {sshd.port} -i {sshd.client_key} -o UserKnownHostsFile={known} "
        f"-L 0:{targets.host}:{targets.echo} {sshd.destination}"
    )
    refused = kernel.run(f"%tunnel {line}")  # this frontend allows no input
    assert not refused.ok and "could not ask" in refused.reply["evalue"]
    asked: list[tuple[str, bool]] = []
    ran = kernel.run(f"t = %tunnel {line}", answers=["yes"], asked=asked)
    assert ran.ok, ran.text
    ((question, password),) = asked
    assert "Are you sure you want to continue connecting" in question and not password
    assert "yes" not in ran.text  # the answer is not echoed into the cell
    port = kernel.value("t.forwards[0].listen_port")
    assert clients.echo_roundtrip("127.0.0.1", port, b"asked", 10) == b"asked"
    assert known.exists()


def test_a_passphrase_is_asked_with_getpass_and_kept_nowhere(
    kernel: Kernel, sshd, targets, tmp_path
) -> None:
    import shutil
    import subprocess

    key = tmp_path / "locked"
    shutil.copyfile(sshd.client_key, key)
    key.chmod(0o600)
    subprocess.run(
        ["ssh-keygen", "-q", "-p", "-P", "", "-N", "hunter2 long", "-f", str(key)],
        check=True,
        timeout=30,
    )
    assert kernel.run("%load_ext nbtunnel").ok
    line = (
        f"-p {sshd.port} -i {key} -o IdentitiesOnly=yes "
        f"-o UserKnownHostsFile={sshd.known_hosts} "
        f"-L 0:{targets.host}:{targets.echo} {sshd.destination}"
    )
    asked: list[tuple[str, bool]] = []
    ran = kernel.run(f"t = %tunnel {line}", answers=["hunter2 long"], asked=asked)
    assert ran.ok, ran.text
    assert asked == [(f"Enter passphrase for key '{key}': ", True)]
    history = kernel.value("'\\n'.join(In)")
    assert "hunter2" not in history and "hunter2" not in ran.text


@pytest.mark.skipif(not users.can_create(), reason=users.SKIP_REASON)
def test_a_pam_question_is_asked_with_getpass(kernel: Kernel, rig, targets) -> None:
    options = {"UsePAM": "yes", "KbdInteractiveAuthentication": "yes"}
    with users.login_user() as login, start_sshd(rig.netns, options=options) as server:
        assert kernel.run("%load_ext nbtunnel").ok
        line = (
            f"-p {server.port} -o UserKnownHostsFile={server.known_hosts} "
            f"-L 0:{targets.host}:{targets.echo} {login.name}@{server.host}"
        )
        asked: list[tuple[str, bool]] = []
        ran = kernel.run(f"t = %tunnel {line}", answers=[login.password], asked=asked)
        assert ran.ok, ran.text
        assert asked == [("Password: ", True)]  # PAM's words, through getpass
        port = kernel.value("t.forwards[0].listen_port")
        assert clients.echo_roundtrip("127.0.0.1", port, b"pam", 10) == b"pam"
        assert login.password not in ran.text
        assert kernel.run("%tunnel stop all").ok
