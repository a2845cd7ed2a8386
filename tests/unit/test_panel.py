"""The widget panel without a browser or a kernel.

The view logic (nbtunnel.panel_view) is pure and tested on snapshots.  The
panel itself (nbtunnel.ui.panel) runs real ipywidgets against a small fake
manager: widgets made outside a kernel get the ``comm`` package's comm,
and ``comm.create_comm`` is the documented hook a kernel replaces, which
the tests use to record what would be sent to the page.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from typing import Any

import comm
import pytest
from comm.base_comm import BaseComm
from nbtunnel.client.handles import Forward
from nbtunnel.errors import EngineError, ForwardError, SpecError
from nbtunnel.grammar.forwards import ForwardSpec, parse_forward
from nbtunnel.grammar.spec import TunnelSpec
from nbtunnel.status import (
    STATES,
    ForwardSnapshot,
    ForwardStats,
    State,
    TunnelSnapshot,
)
from nbtunnel.ui.panel import ticker, view, widget

# -- a fake manager: the panel's only way to the tunnels ---------------------


class FakeForward:
    def __init__(self, tunnel: FakeTunnel, index: int, spec: ForwardSpec) -> None:
        self.tunnel = tunnel
        self.index = index
        self.spec = spec
        self.listen_port = spec.listen_port or 40000 + index
        self.state: State = "up"
        self.error: str | None = None
        self.stats = ForwardStats()
        self.replaced_by: FakeForward | None = None

    # The real handle's rule, which needs only replaced_by.
    current = Forward.current

    def stop(self) -> None:
        self.tunnel.manager.record("stop", self)
        self.state = "stopped"

    def snapshot(self) -> ForwardSnapshot:
        s = self.spec
        return ForwardSnapshot(
            index=self.index,
            spec=str(s),
            kind=s.kind,
            listen_host=s.listen_host or "127.0.0.1",
            listen_port=self.listen_port,
            listen_path=s.listen_path,
            target_host=s.target_host,
            target_port=s.target_port,
            target_path=s.target_path,
            state=self.state,
            error=self.error,
            stats=self.stats,
        )


class FakeTunnel:
    def __init__(self, manager: FakeManager, tid: int, name: str) -> None:
        self.manager = manager
        self.id = tid
        self.name = name
        self.destination = f"user@{name}"
        self.state: State = "up"
        self.error: str | None = None
        self.forwards: list[FakeForward] = []
        self._count = 0

    def add(self, text: str) -> FakeForward:
        flag, arg = text.split(" ", 1)
        forward = FakeForward(self, self._count, parse_forward(flag, arg))
        self._count += 1
        self.forwards.append(forward)
        return forward

    def snapshot(self) -> TunnelSnapshot:
        return TunnelSnapshot(
            id=self.id,
            destination=self.destination,
            state=self.state,
            error=self.error,
            forwards=tuple(f.snapshot() for f in self.forwards),
            name=self.name,
        )


class FakeManager:
    def __init__(self) -> None:
        self.live: list[FakeTunnel] = []
        self.calls: list[tuple[Any, ...]] = []
        self.closed = False
        self.refuse: Exception | None = None  # what the next action raises
        self.snapshot_error: Exception | None = None
        self.snapshot_requests = 0

    def record(self, *call: Any) -> None:
        self.calls.append(call)
        if self.refuse is not None:
            refusal, self.refuse = self.refuse, None
            raise refusal

    def tunnel(self, name: str, *forwards: str) -> FakeTunnel:
        t = FakeTunnel(self, len(self.live) + 1, name)
        for text in forwards:
            t.add(text)
        self.live.append(t)
        return t

    def tunnels(self) -> list[FakeTunnel]:
        return list(self.live)

    def snapshots(self) -> list[TunnelSnapshot]:
        self.snapshot_requests += 1
        if self.snapshot_error is not None:
            raise self.snapshot_error
        return [t.snapshot() for t in self.live]

    def restart_forward(self, forward: FakeForward) -> FakeForward:
        self.record("restart", forward)
        t = forward.tunnel
        new = FakeForward(t, t._count, forward.spec)
        t._count += 1
        new.listen_port = forward.listen_port
        t.forwards[t.forwards.index(forward)] = new
        forward.replaced_by = new
        return new

    def remove_forward(self, forward: FakeForward) -> None:
        self.record("remove", forward)
        forward.tunnel.forwards.remove(forward)

    def open(self, line: str) -> None:
        self.record("open", line)

    def add(self, tunnel: FakeTunnel, forwards: tuple[ForwardSpec, ...]) -> None:
        self.record("add", tunnel.id, tuple(str(f) for f in forwards))
        for f in forwards:
            tunnel.add(str(f))


# -- what the page would get -------------------------------------------------


class RecordingComm(BaseComm):
    """A kernel's comm, minus the kernel: keeps every message it would send."""

    sent: list[tuple[str, dict[str, Any]]] = []

    def publish_msg(
        self, msg_type: str, data: Any = None, *args: Any, **kw: Any
    ) -> None:
        RecordingComm.sent.append((self.comm_id, data or {}))


@pytest.fixture(autouse=True)
def recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    RecordingComm.sent = []
    monkeypatch.setattr(comm, "create_comm", RecordingComm)
    yield RecordingComm.sent


@pytest.fixture(autouse=True)
def no_ticks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The tests refresh by hand unless they test the ticker; each ends with
    # no ticker thread left.
    monkeypatch.setattr(ticker, "TICK_SECONDS", 3600.0)
    yield
    _wait_ticker_gone()


def _wait_ticker_gone() -> None:
    for panel in list(ticker.TICKER._panels):
        panel.close()
    thread = ticker.TICKER.thread
    if thread is not None:
        ticker.TICKER.poke()
        thread.join(10)
        assert not thread.is_alive()


def find(root: Any, cls: str) -> list[Any]:
    """Widgets under ``root`` with a CSS class, in page order (a DOM query)."""
    found = [root] if cls in getattr(root, "_dom_classes", ()) else []
    for child in getattr(root, "children", ()):
        found += find(child, cls)
    return found


def one(root: Any, cls: str) -> Any:
    (hit,) = find(root, cls)
    return hit


def updates(sent: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, set[str]]]:
    return [
        (comm_id, set(data["state"]))
        for comm_id, data in sent
        if data.get("method") == "update"
    ]


# -- the view logic ------------------------------------------------------------


def _fwd(text: str, state: State = "up", **changes: Any) -> ForwardSnapshot:
    flag, arg = text.split(" ", 1)
    s = parse_forward(flag, arg)
    values: dict[str, Any] = dict(
        index=0,
        spec=str(s),
        kind=s.kind,
        listen_host=s.listen_host or "127.0.0.1",
        listen_port=s.listen_port or 41234,
        listen_path=s.listen_path,
        target_host=s.target_host,
        target_port=s.target_port,
        target_path=s.target_path,
        state=state,
    )
    values.update(changes)
    return ForwardSnapshot(**values)


def _tun(*forwards: ForwardSnapshot, state: State = "up", error: str | None = None):
    return TunnelSnapshot(
        id=7, destination="me@bastion", state=state, error=error, forwards=forwards
    )


@pytest.mark.parametrize(
    ("tunnel_state", "forward_state", "word", "on"),
    [
        ("up", "up", "up", True),
        ("starting", "starting", "connecting", True),
        ("reconnecting", "up", "reconnecting", True),
        ("up", "failed", "failed", False),
        ("failed", "up", "failed", False),
        ("up", "stopped", "stopped", False),
        ("stopped", "up", "stopped", False),
    ],
)
def test_every_state_has_its_light_and_toggle(
    tunnel_state: State, forward_state: State, word: str, on: bool
) -> None:
    snap = _tun(_fwd("-L 0:db:5432", forward_state), state=tunnel_state)
    row = view.row(snap, snap.forwards[0], view.Rates(), 0.0)
    assert row.light.endswith(f"</span> {word}")
    assert view.LIGHTS[row.state][1] in row.light
    assert row.on is on
    assert set(view.LIGHTS) == set(STATES)  # every state has a light


def test_a_row_says_where_each_end_is_and_its_counters() -> None:
    stats = ForwardStats(2048, 10, connections_open=2, connections_total=5)
    f = _fwd("-L 0:db.internal:5432", stats=stats, note="a <caveat>")
    row = view.row(_tun(f), f, view.Rates(), 0.0)
    assert "<b>-L</b> this machine 127.0.0.1:41234" in row.what
    assert "→ the server connects to db.internal:5432" in row.what
    assert "via me@bastion" in row.what
    assert "a &lt;caveat&gt;" in row.what  # escaped, not markup
    assert row.connections == "2 open · 5 total"
    assert row.traffic == "↑ 2.0 KiB  ↓ 10 B"
    assert row.key == (7, 0) and row.link is None and row.error == ""
    remote = _fwd("-R 0:localhost:3000", listen_port=50000)
    text = view.row(_tun(remote), remote, view.Rates(), 0.0).what
    assert (
        "the server 127.0.0.1:50000 → this machine connects to localhost:3000" in text
    )


def test_the_error_shown_is_the_forwards_then_a_connections_then_the_tunnels() -> None:
    rates = view.Rates()
    own = _fwd("-L 0:db:1", "failed", error="port in use")
    assert view.row(_tun(own), own, rates, 0).error == "port in use"
    conn = _fwd("-L 0:db:1", stats=ForwardStats(last_error="refused by db:1"))
    assert view.row(_tun(conn), conn, rates, 0).error == "refused by db:1"
    lost = _fwd("-L 0:db:1")
    snap = _tun(lost, state="failed", error="connection lost")
    assert view.row(snap, lost, rates, 0).error == "connection lost"


def test_rates_come_from_successive_snapshots() -> None:
    rates = view.Rates(window=0.5)
    assert rates.update((1, 0), 10.0, 0, 0) == (0.0, 0.0)
    assert rates.update((1, 0), 11.0, 2048, 512) == (2048.0, 512.0)
    # Within the window the last rate stands (a refresh right after a click).
    assert rates.update((1, 0), 11.1, 9999, 9999) == (2048.0, 512.0)
    assert rates.update((1, 0), 13.0, 2048 + 4000, 512) == (2000.0, 0.0)
    # A counter that went back (a new forward at that key) is no negative rate.
    assert rates.update((1, 0), 14.0, 0, 0) == (0.0, 0.0)
    rates.update((2, 0), 14.0, 0, 0)
    rates.keep({(2, 0)})
    assert rates.update((1, 0), 20.0, 5000, 0) == (0.0, 0.0)  # forgotten: anew
    assert rates.update((2, 0), 15.0, 100, 0) == (100.0, 0.0)


def test_traffic_shows_rates_only_while_bytes_flow() -> None:
    assert view.traffic(0, 0, 0.0, 0.0) == "↑ 0 B  ↓ 0 B"
    assert view.traffic(3 << 20, 1024, 1536.0, 0.4) == "↑ 3.0 MiB 1.5 KiB/s  ↓ 1.0 KiB"
    rates = view.Rates()
    f0 = _fwd("-L 0:db:1")
    f1 = _fwd("-L 0:db:1", stats=ForwardStats(bytes_from_target=4096))
    view.rows([_tun(f0)], rates, 0.0)
    (row,) = view.rows([_tun(f1)], rates, 2.0)
    assert row.traffic == "↑ 0 B  ↓ 4.0 KiB 2.0 KiB/s"


@pytest.mark.parametrize(
    ("text", "changes", "url"),
    [
        ("-L 0:localhost:8888", {}, "http://127.0.0.1:41234/"),
        ("-L 0:web:80", {}, "http://127.0.0.1:41234/"),
        ("-L 0:10.0.0.5:3000", {}, "http://127.0.0.1:41234/"),
        ("-L 0:site:443", {}, "https://127.0.0.1:41234/"),
        ("-L 0:grafana.internal:3100", {}, "http://127.0.0.1:41234/"),
        ("-L 0:my-web-app:9999", {}, "http://127.0.0.1:41234/"),
        ("-L *:0:h:8080", {"listen_host": "*"}, "http://127.0.0.1:41234/"),
        ("-L 0:h:8080", {"listen_host": "0.0.0.0"}, "http://127.0.0.1:41234/"),
        ("-L 0:h:8080", {"listen_host": "::1"}, "http://[::1]:41234/"),
        ("-L 0:h:8080", {"listen_host": "::"}, "http://[::1]:41234/"),
        ("-L 0:db:5432", {}, None),
        ("-L 0:webster-db:5432", {}, None),  # a word, not a substring
        ("-L 0:h:8080", {"state": "stopped"}, None),
        ("-L /tmp/s.sock:h:80", {"listen_port": None}, None),
        ("-L 0:/run/app.sock", {}, None),
        ("-R 0:localhost:8888", {}, None),
        ("-D 0", {}, None),
    ],
)
def test_a_local_web_forward_gets_a_link(
    text: str, changes: dict[str, Any], url: str | None
) -> None:
    f = _fwd(text, **changes)
    assert view.link(f) == url
    assert view.row(_tun(f), f, view.Rates(), 0).link == (
        url if f.state == "up" else None
    )


def test_the_link_is_in_the_row_and_opens_a_new_tab() -> None:
    f = _fwd("-L 0:localhost:8888")
    row = view.row(_tun(f), f, view.Rates(), 0)
    assert "href='http://127.0.0.1:41234/'" in row.what
    assert "target='_blank'" in row.what
    failed = view.row(_tun(f, state="failed"), f, view.Rates(), 0)
    assert failed.link is None and "href" not in failed.what


def test_the_box_reads_a_whole_line_or_forwards_alone() -> None:
    line = view.read_new("-L 0:db:5432 me@bastion")
    assert isinstance(line, TunnelSpec) and line.destination.host == "bastion"
    assert view.read_new("  %tunnel ssh -N -L 0:db:5432 me@bastion ") == line
    alone = view.read_new("-L 0:web:80 -D 1080")
    assert alone == (parse_forward("-L", "0:web:80"), parse_forward("-D", "1080"))
    assert view.read_new("-NL0:web:80") == (parse_forward("-L", "0:web:80"),)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "type a forward"),
        ("   %tunnel ", "type a forward"),
        ("-L 9000:db me@h", "'9000:db'"),
        ("-L 9000:db", "'9000:db'"),
        ("-p 2222 -L 0:db:1", "no destination"),  # options need a host
        ("me@h", "has no forward"),
        ("-L 0:db:1 'unclosed", "no closing quotation"),
        ("-Q 0:db:1", "-Q"),
    ],
)
def test_what_the_box_refuses_says_why(text: str, says: str) -> None:
    with pytest.raises(SpecError) as refused:
        wanted = view.read_new(text)
        if isinstance(wanted, TunnelSpec) and not wanted.forwards:
            # As the manager would: a line without forwards opens nothing.
            raise SpecError(f"'{wanted.text}' has no forward")
    assert says.lower() in str(refused.value).lower()


def test_forwards_alone_go_to_the_one_or_the_chosen_tunnel() -> None:
    with pytest.raises(SpecError, match="no tunnel is open"):
        view.pick_tunnel([], None)
    assert view.pick_tunnel([(3, "db")], None) == 3
    assert view.pick_tunnel([(3, "db"), (4, "web")], 4) == 4
    with pytest.raises(SpecError, match=r"choose the tunnel to add to \(db, web\)"):
        view.pick_tunnel([(3, "db"), (4, "web")], None)
    with pytest.raises(SpecError, match="choose"):
        view.pick_tunnel([(3, "db"), (4, "web")], 9)  # it stopped meanwhile


def test_summary() -> None:
    assert view.summary([]).startswith("no tunnels yet")
    f, g = _fwd("-L 0:a:1"), _fwd("-L 0:b:1", "stopped", index=1)
    assert view.summary([_tun(f, g)]) == "1 tunnel · 2 forwards · 1 up"


# -- the panel, on a fake manager ----------------------------------------------


@pytest.fixture
def manager() -> FakeManager:
    m = FakeManager()
    m.tunnel("bastion", "-L 0:localhost:8888", "-L 0:db:5432")
    return m


def rows_of(panel: widget.Panel) -> list[Any]:
    return find(panel, "nbt-row")


def test_one_row_per_forward_with_its_words(manager: FakeManager) -> None:
    panel = widget.Panel(manager)  # type: ignore[arg-type]
    rows = rows_of(panel)
    assert len(rows) == 2
    first, second = (one(r, "nbt-what").value for r in rows)
    assert "this machine 127.0.0.1:40000" in first
    assert "href='http://127.0.0.1:40000/'" in first
    assert "db:5432" in second and "href" not in second
    assert one(rows[0], "nbt-light").value.endswith("</span> up")
    toggle = one(rows[0], "nbt-toggle")
    assert toggle.value is True and toggle.description == "on"
    assert "nbt-state-up" in rows[0]._dom_classes
    assert one(panel, "nbt-summary").value == ("1 tunnel · 2 forwards · 2 up")
    assert repr(panel) == "<nbtunnel panel: 2 forwards>"
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "--jp-border-color2" in one(panel, "nbt-title").value


def test_the_toggle_stops_and_restarts_through_the_manager(
    manager: FakeManager,
) -> None:
    panel = widget.Panel(manager)  # type: ignore[arg-type]
    row = rows_of(panel)[0]
    toggle = one(row, "nbt-toggle")
    old = manager.live[0].forwards[0]
    toggle.set_state({"value": False})  # what a click on the page sends
    assert manager.calls == [("stop", old)]
    panel.refresh()
    assert one(row, "nbt-light").value.endswith("</span> stopped")
    assert toggle.description == "off" and "nbt-state-stopped" in row._dom_classes
    assert rows_of(panel)[0] is row  # a stopped forward keeps its row
    assert "href" not in one(row, "nbt-what").value

    toggle.set_state({"value": True})
    assert manager.calls[-1] == ("restart", old)
    new = manager.live[0].forwards[0]
    assert new is not old and old.replaced_by is new
    panel.refresh()
    # The same row, now the new forward's, on the same port.
    assert rows_of(panel)[0] is row
    assert toggle.value is True and one(row, "nbt-light").value.endswith("</span> up")
    assert "127.0.0.1:40000" in one(row, "nbt-what").value
    toggle.set_state({"value": False})
    assert manager.calls[-1] == ("stop", new)


def test_the_panels_own_updates_call_nothing(manager: FakeManager) -> None:
    panel = widget.Panel(manager)  # type: ignore[arg-type]
    manager.live[0].forwards[0].state = "stopped"  # e.g. %tunnel -KL
    panel.refresh()
    assert one(rows_of(panel)[0], "nbt-toggle").value is False
    manager.live[0].forwards[0].state = "up"
    panel.refresh()
    assert manager.calls == []


def test_a_failed_restart_is_shown_in_its_row_not_raised(
    manager: FakeManager,
) -> None:
    panel = widget.Panel(manager)  # type: ignore[arg-type]
    row = rows_of(panel)[0]
    toggle, error = one(row, "nbt-toggle"), one(row, "nbt-error")
    assert error.layout.display == "none"
    toggle.set_state({"value": False})
    panel.refresh()
    manager.refuse = ForwardError("tunnel bastion is not running")
    toggle.set_state({"value": True})
    panel.refresh()
    assert toggle.value is False  # back to what is true
    assert "tunnel bastion is not running" in error.value
    assert error.layout.display == "flex"
    toggle.set_state({"value": True})  # it works the second time
    panel.refresh()
    assert error.value == "" and error.layout.display == "none"
    assert toggle.value is True


def test_remove_goes_through_the_manager_and_the_row_goes(
    manager: FakeManager,
) -> None:
    panel = widget.Panel(manager)  # type: ignore[arg-type]
    first, second = rows_of(panel)
    gone = manager.live[0].forwards[0]
    one(first, "nbt-remove").click()
    assert manager.calls == [("remove", gone)]
    panel.refresh()
    assert rows_of(panel) == [second]
    assert first.comm is None  # its widgets were closed, not left behind
    manager.refuse = ForwardError("the engine said no")
    one(second, "nbt-remove").click()
    panel.refresh()
    assert rows_of(panel) == [second]
    assert "the engine said no" in one(second, "nbt-error").value


def test_the_box_shows_a_bad_spec_inline(manager: FakeManager) -> None:
    panel = widget.Panel(manager)  # type: ignore[arg-type]
    entry, add = one(panel, "nbt-new"), one(panel, "nbt-add")
    error = find(panel, "nbt-add-error")[0]
    entry.set_state({"value": "-L 9000:db me@bastion"})
    add.click()  # raises nothing
    assert "'9000:db'" in error.value and error.layout.display == "flex"
    assert manager.calls == []
    assert entry.value == "-L 9000:db me@bastion"  # kept, to be corrected


def test_the_box_opens_a_line_or_adds_to_the_open_tunnel(
    manager: FakeManager,
) -> None:
    panel = widget.Panel(manager)  # type: ignore[arg-type]
    entry, add = one(panel, "nbt-new"), one(panel, "nbt-add")
    error = find(panel, "nbt-add-error")[0]
    entry.set_state({"value": "-L 0:web:80 me@web"})
    add.click()
    assert manager.calls == [("open", "-L 0:web:80 me@web")]
    assert entry.value == "" and error.value == ""
    entry.set_state({"value": "-L 0:web:8080"})
    add.click()
    assert manager.calls[-1] == ("add", 1, ("-L 0:web:8080",))
    panel.refresh()
    assert len(rows_of(panel)) == 3
    manager.refuse = ForwardError("port 8080 is in use")
    entry.set_state({"value": "-L 8080:web:80"})
    add.click()
    assert "port 8080 is in use" in error.value
    assert entry.value == "-L 8080:web:80"


def test_with_several_tunnels_forwards_alone_go_to_the_chosen_one(
    manager: FakeManager,
) -> None:
    manager.tunnel("web", "-L 0:web:80")
    panel = widget.Panel(manager)  # type: ignore[arg-type]
    target = one(panel, "nbt-target")
    assert target.layout.display == "flex"
    assert target.options == (("bastion (user@bastion)", 1), ("web (user@web)", 2))
    entry, add = one(panel, "nbt-new"), one(panel, "nbt-add")
    target.set_state({"index": 1})
    entry.set_state({"value": "-D 0"})
    add.click()
    assert manager.calls == [("add", 2, ("-D 0",))]
    # The chosen tunnel goes: the box says to choose rather than guess.
    manager.live.pop(1)
    panel.refresh()
    assert target.layout.display == "none"
    entry.set_state({"value": "-D 0"})
    add.click()
    assert manager.calls[-1] == ("add", 1, ("-D 0",))


def test_forwards_alone_with_no_tunnel_say_what_to_type() -> None:
    panel = widget.Panel(FakeManager())  # type: ignore[arg-type]
    one(panel, "nbt-new").set_state({"value": "-L 0:web:80"})
    one(panel, "nbt-add").click()
    error = find(panel, "nbt-add-error")[0]
    assert "no tunnel is open to add to" in error.value
    assert rows_of(panel) == []
    assert one(panel, "nbt-summary").value.startswith("no tunnels yet")


def test_an_engine_that_cannot_answer_is_said_not_raised(
    manager: FakeManager,
) -> None:
    panel = widget.Panel(manager)  # type: ignore[arg-type]
    manager.snapshot_error = EngineError("the nbtunnel engine stopped")
    panel.refresh()
    status = find(panel, "nbt-add-error")[1]
    assert "the nbtunnel engine stopped" in status.value
    assert len(rows_of(panel)) == 2  # the last known rows stay
    manager.snapshot_error = None
    panel.refresh()
    assert status.value == ""


def test_a_refresh_sends_only_what_changed(
    manager: FakeManager, recording: list[Any]
) -> None:
    panel = widget.Panel(manager)  # type: ignore[arg-type]
    panel.refresh()
    recording.clear()
    panel.refresh()
    assert updates(recording) == []  # nothing changed, nothing sent
    manager.live[0].forwards[1].stats = ForwardStats(bytes_to_target=5000)
    panel.refresh()
    traffic = one(rows_of(panel)[1], "nbt-traffic")
    assert updates(recording) == [(traffic.comm.comm_id, {"value"})]


def test_the_ticker_keeps_panels_in_sync_from_one_thread(
    manager: FakeManager, recording: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ticker, "TICK_SECONDS", 0.1)
    before = threading.active_count()
    a = widget.Panel(manager)  # type: ignore[arg-type]
    b = widget.Panel(manager)  # type: ignore[arg-type]
    assert threading.active_count() == before + 1  # one ticker for both
    thread = ticker.TICKER.thread
    assert thread is not None and thread.name == "nbtunnel-panel-ticker"
    # One snapshot request per tick for both panels, not one each: at most
    # 10 ticks in a second (fewer on a busy machine), so never 20 requests.
    requests = manager.snapshot_requests
    time.sleep(1.0)
    assert 2 <= manager.snapshot_requests - requests <= 12

    manager.live[0].add("-L 0:web:3000")  # opened elsewhere (magic, API)
    _until(lambda: len(rows_of(a)) == 3 and len(rows_of(b)) == 3)

    one(rows_of(a)[0], "nbt-toggle").set_state({"value": False})  # in a
    _until(lambda: one(rows_of(b)[0], "nbt-light").value.endswith("stopped"))
    one(rows_of(b)[1], "nbt-remove").click()  # in b
    _until(lambda: len(rows_of(a)) == 2)

    a.close()
    assert ticker.TICKER.thread is thread  # b is still there
    b.close()
    thread.join(5)
    assert not thread.is_alive() and ticker.TICKER.thread is None


def test_an_idle_panel_costs_no_cpu(
    manager: FakeManager, recording: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Twenty times the real rate, to have something to measure.
    monkeypatch.setattr(ticker, "TICK_SECONDS", 0.05)
    widget.Panel(manager)  # type: ignore[arg-type]
    recording.clear()
    requests = manager.snapshot_requests
    before = time.process_time()
    time.sleep(2.0)
    used = time.process_time() - before
    assert manager.snapshot_requests - requests >= 10  # it did tick
    assert updates(recording) == []  # and sent nothing: nothing changed
    # Under 5 % of one core at 20 Hz: under 0.25 % at the real 1 Hz.
    assert used < 0.1


def test_the_ticker_lets_go_of_collected_and_closed_panels(
    manager: FakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ticker, "TICK_SECONDS", 0.05)
    panel = widget.Panel(manager)  # type: ignore[arg-type]
    thread = ticker.TICKER.thread
    assert thread is not None
    # Closed, and no reference left: the ticker holds panels weakly.
    panel.close()
    del panel
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()
    assert list(ticker.TICKER._panels) == []


def test_the_ticker_ends_when_the_manager_closes(
    manager: FakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ticker, "TICK_SECONDS", 0.05)
    panel = widget.Panel(manager)  # type: ignore[arg-type]
    thread = ticker.TICKER.thread
    assert thread is not None and panel.alive
    manager.closed = True
    thread.join(5)
    assert not thread.is_alive() and not panel.alive
    # A new panel starts a new ticker.
    widget.Panel(FakeManager())  # type: ignore[arg-type]
    assert ticker.TICKER.thread is not None


def test_a_broken_panel_or_manager_does_not_stop_the_others(
    manager: FakeManager,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(ticker, "TICK_SECONDS", 0.05)
    good = widget.Panel(manager)  # type: ignore[arg-type]
    other, third = FakeManager(), FakeManager()
    other.tunnel("x", "-L 0:x:1")
    broken = widget.Panel(other)  # type: ignore[arg-type]
    worse = widget.Panel(third)  # type: ignore[arg-type]
    # A state the view has no light for breaks that panel's refresh; a
    # manager raising what no manager should breaks its panels' reads.
    other.live[0].forwards[0].state = "bogus"  # type: ignore[assignment]
    third.snapshot_error = RuntimeError("a bug")
    manager.live[0].add("-L 0:web:3000")
    _until(lambda: len(rows_of(good)) == 3)
    # Both logged by the ticker thread, one after the other in one tick:
    # wait for each (asserting the second once the first is in could race).
    _until(lambda: "nbtunnel panel refresh failed" in caplog.text)
    _until(lambda: "reading the tunnels failed" in caplog.text)
    assert ticker.TICKER.thread is not None
    broken.close()
    worse.close()


def test_a_closed_panel_is_inert(manager: FakeManager) -> None:
    panel = widget.Panel(manager)  # type: ignore[arg-type]
    toggle = one(rows_of(panel)[0], "nbt-toggle")
    panel.close()
    panel.close()  # twice is fine
    assert panel.comm is None and toggle.comm is None
    # As any closed widget: no view left to show, only its repr.
    assert panel._repr_mimebundle_ is None
    assert repr(panel) == "<closed nbtunnel panel>"
    panel.refresh()  # nothing to refresh, nothing raised
    assert manager.calls == []


def _until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the panel did not catch up"
        time.sleep(0.02)


def test_forwards_for_a_tunnel_that_stopped_meanwhile_are_refused(
    manager: FakeManager,
) -> None:
    panel = widget.Panel(manager)  # type: ignore[arg-type]
    manager.live.clear()  # stopped by a cell since the panel last looked
    one(panel, "nbt-new").set_state({"value": "-L 0:web:80"})
    one(panel, "nbt-add").click()
    error = find(panel, "nbt-add-error")[0]
    assert "that tunnel has stopped" in error.value
    assert manager.calls == []


def test_the_public_function_and_lazy_ipywidgets() -> None:
    import subprocess
    import sys

    import nbtunnel

    made = nbtunnel.panel(FakeManager())  # type: ignore[arg-type]
    assert isinstance(made, widget.Panel)
    made.close()
    # Importing nbtunnel (and its magic) must not import ipywidgets.
    code = (
        "import sys, nbtunnel, nbtunnel.ui.magic; "
        "assert 'ipywidgets' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- the panel is a widget -----------------------------------------------------


def test_the_panel_is_a_vbox_that_goes_inside_other_layouts(
    manager: FakeManager, recording: list[Any]
) -> None:
    import ipywidgets as w

    panel = widget.Panel(manager, layout=w.Layout(width="90%"))  # type: ignore[arg-type]
    assert isinstance(panel, w.VBox) and isinstance(panel, w.DOMWidget)
    assert panel.layout.width == "90%"
    assert "nbt-panel" in panel._dom_classes
    # The page gets it as a VBox model holding the panel's parts.
    (opened, *_) = [data for cid, data in recording if cid == panel.model_id]
    assert opened["state"]["_model_name"] == "VBoxModel"
    assert len(opened["state"]["children"]) == 5
    # Inside a layout of one's own it is a child like any widget.
    label = w.Label("beside it")
    box = w.VBox([panel, label])
    app = w.AppLayout(center=panel, footer=label)
    assert box.get_state()["children"][0] == f"IPY_MODEL_{panel.model_id}"
    assert app.center is panel
    manager.live[0].add("-L 0:web:3000")
    panel.refresh()
    assert len(rows_of(panel)) == 3  # still live in there
    for made in (app, box, label):
        made.close()
    panel.close()


def test_the_panels_state_does_not_shadow_the_boxs(manager: FakeManager) -> None:
    import ipywidgets as w

    panel, bare = widget.Panel(manager), w.VBox()  # type: ignore[arg-type]
    box = set(dir(w.VBox))
    # Its own plain attributes are none of the box's traits or methods
    # (those a bare VBox keeps in its __dict__ too are the widget's)...
    assert set(vars(panel)) & box <= set(vars(bare))
    # ...and it redefines only what it means to: closing (and its repr).
    # (traitlets' metaclass gives every HasTraits class its own tables).
    own = {k for k in vars(widget.Panel) if not k.startswith("__")}
    own -= set(vars(w.VBox))
    assert own & box == {"close"}
    assert set(panel.trait_names()) == set(bare.trait_names())
    bare.close()
    panel.close()


def test_closing_it_as_a_widget_stops_the_ticker(
    manager: FakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ipywidgets as w

    monkeypatch.setattr(ticker, "TICK_SECONDS", 0.05)
    panel = widget.Panel(manager)  # type: ignore[arg-type]
    toggle = one(rows_of(panel)[0], "nbt-toggle")
    thread = ticker.TICKER.thread
    assert thread is not None and panel.alive
    # What a dashboard does on the way out: every widget closed at once.
    w.Widget.close_all()
    assert not panel.alive and panel.comm is None and toggle.comm is None
    thread.join(5)
    assert not thread.is_alive()
    requests = manager.snapshot_requests
    time.sleep(0.2)
    assert manager.snapshot_requests == requests  # nobody asks any more


def test_without_ipywidgets_one_line_names_the_install() -> None:
    import subprocess
    import sys

    # None in sys.modules makes `import ipywidgets` fail for real, as it
    # does where it is not installed; in a process of its own.
    code = """
import sys
sys.modules["ipywidgets"] = None
import nbtunnel
from IPython.core.error import UsageError
from nbtunnel.ui.magic import TunnelMagics
m = nbtunnel.Manager(engine="inline")
try:
    nbtunnel.panel(m)
except nbtunnel.MissingDependencyError as exc:
    assert isinstance(exc, ImportError) and isinstance(exc, nbtunnel.TunnelError)
    assert exc.__cause__ is None and exc.__suppress_context__
    print(exc)
try:
    TunnelMagics(shell=None).tunnel("panel")
except UsageError as exc:
    print(exc)
m.close()
"""
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    said = "the panel needs ipywidgets, which cannot be imported"
    install = "pip install 'nbtunnel[notebook]'"
    lines = ran.stdout.splitlines()
    assert len(lines) == 2, ran.stdout
    for line in lines:
        assert line.startswith(said) and line.endswith(install), line


def test_a_panel_whose_making_failed_leaves_no_widget_open(
    manager: FakeManager,
) -> None:
    import ipywidgets as w
    from ipywidgets.widgets import widget as ipywidget
    from ipywidgets.widgets.widget_style import Style

    def open_widgets() -> set[Any]:
        # A closed widget leaves its Layout and Style open (ipywidgets' way).
        return {
            v
            for v in ipywidget._instances.values()
            if not isinstance(v, (w.Layout, Style))
        }

    before = open_widgets()
    manager.snapshot_error = RuntimeError("a bug")  # no manager should raise it
    with pytest.raises(RuntimeError, match="a bug"):
        widget.Panel(manager)  # type: ignore[arg-type]
    gc.collect()  # and Widget.__del__ closes what is left: quietly
    assert open_widgets() == before
    assert ticker.TICKER.thread is None
