"""Tables and lines that say on which machine each end of a forward is."""

from __future__ import annotations

from dataclasses import replace

from nbtunnel.client import display
from nbtunnel.status import ForwardSnapshot, ForwardStats, TunnelSnapshot

from .snapshots import forward_snapshot


def _snap(state: str = "up", error: str | None = None) -> TunnelSnapshot:
    return TunnelSnapshot(
        id=3,
        destination="analyst@warehouse",
        state=state,  # type: ignore[arg-type]
        error=error,
        forwards=(
            ForwardSnapshot(
                index=0,
                spec="-L 0:localhost:5432",
                kind="local",
                listen_host="127.0.0.1",
                listen_port=40000,
                listen_path=None,
                target_host="localhost",
                target_port=5432,
                target_path=None,
                state=state,  # type: ignore[arg-type]
                error=error,
                stats=ForwardStats(2048, 1536 * 1024, 1, 7, 1, "target refused"),
            ),
        ),
        started_at=0.0,
    )


def test_text_table_says_where_each_end_is() -> None:
    text = display.text_table([_snap()])
    header, row = text.splitlines()
    assert "listens on" in header
    assert "this machine 127.0.0.1:40000" in row
    assert "the server connects to localhost:5432" in row
    assert "1/7" in row and "2.0 KiB" in row and "1.5 MiB" in row
    assert "target refused" in row


def test_html_table_escapes_and_colours_state() -> None:
    html = display.html_table([_snap("failed", "<lost>")])
    assert "&lt;lost&gt;" in html and "<lost>" not in html
    assert "--jp-error-color1" in html


def test_a_cancel_names_the_forward_and_tunnel_as_the_tables_do() -> None:
    (forward,) = _snap().forwards
    assert display.cancelled_line(forward, "db") == (
        "cancelled -L 0:localhost:5432 on tunnel db"
        " (it listened on this machine 127.0.0.1:40000)"
    )
    remote = forward_snapshot(
        "-R 8080:localhost:80", "stopped", listen_host="127.0.0.1", listen_port=8080
    )
    assert display.cancelled_line(remote, "2").endswith(
        "on tunnel 2 (it listened on the server 127.0.0.1:8080)"
    )


def test_empty() -> None:
    assert display.text_table([]) == "no tunnels"
    assert "no tunnels" in display.html_table([])


def test_sizes_and_uptime() -> None:
    assert display.size(0) == "0 B"
    assert display.size(1023) == "1023 B"
    assert display.size(5 * 1024**3) == "5.0 GiB"
    assert display.uptime(0, 3725) == "1h02m"
    assert display.uptime(0, 65) == "1m05s"


def test_forward_line() -> None:
    line = display.forward_line(_snap().forwards[0], "analyst@warehouse")
    assert line.startswith("-L this machine 127.0.0.1:40000 → the server connects to")
    assert line.endswith("via analyst@warehouse [up]")


def test_each_kind_says_which_machine_connects() -> None:
    remote = forward_snapshot(
        "-R *:0:localhost:8050",
        listen_host="",
        listen_port=41000,
        target_host="localhost",
        target_port=8050,
    )
    line = display.forward_line(remote, "me@gw")
    assert "-R the server *:41000 → this machine connects to localhost:8050" in line
    socks_here = forward_snapshot("-D 0", listen_host="127.0.0.1", listen_port=1080)
    assert "SOCKS: anywhere the server reaches" in display.forward_line(socks_here, "h")
    socks_there = forward_snapshot("-R 0", listen_host="localhost", listen_port=9)
    assert "SOCKS: anywhere this machine reaches" in display.forward_line(
        socks_there, "h"
    )
    unix = forward_snapshot(
        "-L 0:/run/pg.sock", listen_port=5, target_path="/run/pg.sock"
    )
    assert "the server connects to /run/pg.sock" in display.forward_line(unix, "h")


def test_a_note_is_said_in_the_line() -> None:
    noted = forward_snapshot("-R *:0:h:80", listen_port=4, note="GatewayPorts decides")
    assert display.forward_line(noted, "h").endswith("[up] (GatewayPorts decides)")


def _dashboard(state: str = "up", tunnel: str = "up", bind: str = "localhost"):
    remote = forward_snapshot(
        "-R 0:127.0.0.1:8050",
        listen_host=bind,
        listen_port=41000,
        target_host="127.0.0.1",
        target_port=8050,
    )
    return TunnelSnapshot(
        id=4,
        destination="me@gw.example.com",
        state=tunnel,  # type: ignore[arg-type]
        error=None,
        forwards=(_snap().forwards[0], replace(remote, state=state)),  # type: ignore[arg-type]
        name="dash",
    )


def test_an_up_remote_forward_shows_the_url_to_share_and_the_advice() -> None:
    lines = display.text_table([_dashboard()]).splitlines()
    assert len(lines) == 5  # header, two forwards, the URL and its advice
    assert lines[3] == (
        "share http://gw.example.com:41000/  (-R 0:127.0.0.1:8050, tunnel dash)"
    )
    assert lines[4].startswith("  it listens on the server's loopback")
    assert "GatewayPorts clientspecified (or yes)" in lines[4]
    assert "-R 0.0.0.0:0:127.0.0.1:8050" in lines[4]
    html = display.html_table([_dashboard()])
    assert (
        "<a href='http://gw.example.com:41000/' target='_blank' rel='noopener'>"
        "<code>http://gw.example.com:41000/</code></a>"
    ) in html
    assert "the server&#x27;s loopback" in html  # escaped like the rest


def test_a_wide_remote_forward_shows_what_the_servers_gatewayports_does() -> None:
    text = display.text_table([_dashboard(bind="")])
    assert "share http://gw.example.com:41000/" in text
    assert "the server's GatewayPorts (sshd_config, default no)" in text


def test_nothing_to_share_unless_the_remote_forward_is_up() -> None:
    for snap in (_dashboard(state="stopped"), _dashboard(tunnel="reconnecting")):
        assert "share" not in display.text_table([snap])
        assert "nbtunnel-share" not in display.html_table([snap])
    # A -L alone has nothing to share either.
    assert len(display.text_table([_snap()]).splitlines()) == 2
