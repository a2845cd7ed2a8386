"""``nbtunnel demo``, the README's first command: as on a fresh machine, HOME empty, no agent."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.rig import clients, procs

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _env(home: Path) -> dict[str, str]:
    # No COLUMNS: the width unknown, as where the output is piped.
    env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "COLUMNS")}
    return {**env, "HOME": str(home), "PYTHONPATH": str(ROOT)}


def _demo(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "nbtunnel", "demo", *args],
        preexec_fn=procs.interruptible,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(home),
        cwd=home,
    )


def test_the_demo_tours_every_kind_of_forward_and_exits_0(tmp_path: Path) -> None:
    started = time.monotonic()
    with _demo(tmp_path) as demo:
        out, err = demo.communicate(timeout=90)
    took = time.monotonic() - started
    assert demo.returncode == 0, err
    assert took < 60
    assert err == ""
    assert (
        "GET http://127.0.0.1:" in out and "200 'Hello from the private service'" in out
    )
    assert "67108864 bytes in" in out and "sha256 matches" in out
    # Outside a Jupyter server, the browser's URL is this machine's.
    port = re.search(r"GET http://127\.0\.0\.1:(\d+)/ ->", out)
    assert port, out
    assert f"open it in your browser: http://127.0.0.1:{port.group(1)}/\n" in out
    assert "-> 200 'Hello from your dashboard'" in out
    assert "through socks5h://127.0.0.1:" in out
    # The status table, too wide for the unknown width (a pipe): a block
    # per forward, and every line within 100 columns.
    blocks = re.findall(
        r"^demo  (-[LRD])  up \S+  via demo@127\.0\.0\.1\n(.*)", out, re.M
    )
    assert [flag for flag, _ in blocks] == ["-L", "-R", "-D"], out
    assert re.fullmatch(r"  listens on  this machine 127\.0\.0\.1:\d+", blocks[0][1])
    assert re.fullmatch(r"  listens on  the server localhost:\d+", blocks[1][1])
    assert re.fullmatch(r"  listens on  this machine 127\.0\.0\.1:\d+", blocks[2][1])
    assert max(len(line) for line in out.splitlines()) <= 100, out
    # OpenSSH's equivalents, with the bound ports (ssh takes no -L 0).
    commands = re.findall(r"^   ssh -N (-[LRD]) (\S+) ", out, re.M)
    assert [flag for flag, _ in commands] == ["-L", "-R", "-D"]
    assert not commands[0][1].startswith("0:") and commands[2][1] != "0"
    assert "done in" in out
    # Nothing written where the user's keys live.
    assert list(tmp_path.iterdir()) == []


def _until_serving(demo: subprocess.Popen[str]) -> list[str]:
    """The lines the demo printed until it said it serves."""
    assert demo.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = demo.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("serving until Ctrl-C"):
            return lines
    raise AssertionError("".join(lines))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_serve_stopped_by_a_signal_removes_its_directory_and_key(
    tmp_path: Path, signum: signal.Signals
) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    env = {**_env(home), "TMPDIR": str(temporary)}
    with subprocess.Popen(
        [sys.executable, "-m", "nbtunnel", "demo", "--serve", "--size", "1"],
        preexec_fn=procs.interruptible,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=home,
    ) as demo:
        _until_serving(demo)
        made = list(temporary.iterdir())
        assert [p.name[:14] for p in made] == ["nbtunnel-demo-"], made
        assert (made[0] / "id_ed25519").exists()  # the private key
        demo.send_signal(signum)
        out, err = demo.communicate(timeout=30)
    assert demo.returncode == 0, err
    assert "done in" in out and "Traceback" not in err
    assert list(temporary.iterdir()) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_the_tour_cleans_up_and_says_so(
    tmp_path: Path, signum: signal.Signals
) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {**_env(tmp_path), "TMPDIR": str(temporary)}
    with subprocess.Popen(
        [sys.executable, "-m", "nbtunnel", "demo", "--size", "4096"],
        preexec_fn=procs.interruptible,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    ) as demo:
        assert demo.stdout is not None
        while "GET /bytes/" not in demo.stdout.readline():  # 4 GiB on its way
            assert demo.poll() is None
        demo.send_signal(signum)
        _, err = demo.communicate(timeout=30)
    assert demo.returncode == 128 + signum, err
    assert err == f"nbtunnel demo: stopped by {signum.name}; everything is cleaned up\n"
    assert list(temporary.iterdir()) == []


def test_serve_stays_up_until_ctrl_c(tmp_path: Path) -> None:
    with _demo(tmp_path, "--serve", "--size", "1") as demo:
        assert demo.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("serving until Ctrl-C"):
                break
        tried = demo.stdout.readline()
        found = re.search(r"curl http://127\.0\.0\.1:(\d+)/", tried)
        assert found, "".join(lines) + tried
        port = int(found.group(1))
        time.sleep(1)  # still up a moment later
        status, body = clients.http_get("127.0.0.1", port, "/")
        assert status == 200 and b"private service" in body
        demo.send_signal(signal.SIGINT)
        out, err = demo.communicate(timeout=30)
    assert demo.returncode == 0, err
    assert "done in" in out
    assert clients.port_is_closed("127.0.0.1", port)


SIZE = "--size takes a whole number of MiB, from 1 to 4096: got"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "0"], f"{SIZE} '0'"),
        (["--size"], "--size needs a value: --size MIB"),
        (["--size", "lots"], f"{SIZE} 'lots'"),
        (["--size=4097"], f"{SIZE} '4097'"),
        # The demo's own word makes it the demo, though -1 looks like ssh's.
        (["--size", "-1"], f"{SIZE} '-1'"),
        # A superscript two: a digit to str.isdigit, not to int().
        (["--size", "\u00b2"], f"{SIZE} '\u00b2'"),
        (["--serve", "-v"], "unknown option '-v'; see nbtunnel demo --help"),
        (["--sreve"], "unknown option '--sreve'; did you mean --serve?"),
        (["--bogus"], "unknown option '--bogus'; see nbtunnel demo --help"),
        (["--serve", "extra"], "unknown argument 'extra'; see nbtunnel demo --help"),
    ],
)
def test_bad_arguments_exit_2_with_one_line_naming_them(
    tmp_path: Path, args: list[str], message: str
) -> None:
    with _demo(tmp_path, *args) as demo:
        out, err = demo.communicate(timeout=30)
    assert demo.returncode == 2
    assert err == f"nbtunnel demo: {message}\n"
    assert out == ""


@pytest.mark.parametrize(
    "args", [["--help"], ["--serve", "-h"], ["--size", "1", "--help"]]
)
def test_help_exits_0(tmp_path: Path, args: list[str]) -> None:
    with _demo(tmp_path, *args) as demo:
        out, _ = demo.communicate(timeout=30)
    assert demo.returncode == 0
    assert out.startswith("usage: nbtunnel demo")
