"""What benchmarks/compare.py makes of its runs: medians, ratios, targets, a chart."""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BASE = "openssh"
BULK = [f"{kind}_{way}" for kind in ("L", "R") for way in ("up", "down")]


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    step: str  # the run record's entry
    field: str  # the entry's value
    better: str  # "higher" or "lower"
    digits: int = 0
    chart: bool = False


def _bulk_label(step: str) -> str:
    kind, way = step.split("_")
    return f"-{kind} {way}"


def metrics(conns: list[int]) -> list[Metric]:
    """Every row of the table, in order: (key, label, step, field, better,
    digits, charted)."""
    rows: list[tuple[str, str, str, str, str, int, bool]] = [
        ("first_byte_ms", "call -> first byte, ms", "first_byte", "ms", "lower", 0, True),
        ("first_byte_warm_ms", "  engine running, ms", "first_byte", "first_byte_warm_ms",
         "lower", 0, False),
    ]  # fmt: skip
    for s in BULK:
        label = _bulk_label(s)
        rows.append((f"{s}_mb_s", f"{label} MB/s", s, "mb_s", "higher", 0, True))
    for s in BULK:
        label = _bulk_label(s)
        charted = s.startswith("L")
        rows.append(
            (f"{s}_cpu", f"CPU s/GiB {label}", s, "cpu_s_per_gib", "lower", 2, charted)
        )
    rows += [
        ("rtt_median_us", "RTT 64 B median, us", "rtt", "median_us", "lower", 0, True),
        ("rtt_p99_us", "RTT 64 B p99, us", "rtt", "p99_us", "lower", 0, True),
        ("rtt_cpu_us", "CPU us per round trip", "rtt", "cpu_us_per_rt", "lower", 0, False),
        ("busy_L_up_mb_s", "busy caller: -L up MB/s", "busy_L_up", "mb_s", "higher", 0, True),
        ("idle_L_up_mb_s", "  idle, same size", "idle_L_up", "mb_s", "higher", 0, False),
        ("busy_rtt_median_us", "busy caller: RTT median us", "busy_rtt", "median_us",
         "lower", 0, False),
        ("busy_rtt_p99_us", "busy caller: RTT p99 us", "busy_rtt", "p99_us", "lower", 0, False),
    ]  # fmt: skip
    for n in conns:
        step = f"conc_{n}"
        rows.append(
            (f"{step}_ok", f"{n} at once: succeeded", step, "ok", "higher", 0, True)
        )
        rows.append(
            (f"{step}_s", f"{n} at once: wall s", step, "seconds", "lower", 2, False)
        )
    rows += [
        ("churn_per_s", "new connections a second", "churn", "per_s", "higher", 0,
         False),
        ("burst_drain_s", "burst: drain s", "burst", "drain_s", "lower", 2, False),
        ("burst_worst_s", "burst: bystander worst s", "burst", "bystander_worst_s",
         "lower", 3, False),
    ]  # fmt: skip
    for s in BULK:
        label = f"sshd CPU s/GiB {_bulk_label(s)}"
        rows.append(
            (f"{s}_sshd_cpu", label, s, "sshd_cpu_s_per_gib", "lower", 2, False)
        )
    return [Metric(*row) for row in rows]


def _values(
    records: list[dict[str, Any]], system: str, m: Metric
) -> tuple[list[float], list[str]]:
    values: list[float] = []
    failed: list[str] = []
    for rec in records:
        if rec.get("system") != system:
            continue
        entry = rec.get(m.step)
        if entry is None:
            if "error" in rec:  # the forwarder itself failed to start
                failed.append(rec["error"])
        elif m.field in entry:
            values.append(entry[m.field])
        elif "error" in entry:
            failed.append(entry["error"])
    return values, failed


def summarize(
    records: list[dict[str, Any]], systems: list[str], cfg: argparse.Namespace
) -> dict[str, Any]:
    """Per metric and system: the values of every run, their median, and the
    median's ratio to openssh's."""
    out: dict[str, Any] = {}
    for m in metrics(cfg.conns):
        row: dict[str, Any] = {}
        for s in systems:
            values, failed = _values(records, s, m)
            if values or failed:
                row[s] = {"values": values, "median": _median(values)}
                if failed:
                    row[s]["failed"] = failed
        base = row.get(BASE, {}).get("median")
        for cell in row.values():
            if base and cell["median"] is not None:
                cell["ratio_to_openssh"] = cell["median"] / base
        out[m.key] = {"label": m.label, "better": m.better, "systems": row}
    # Whether a busy caller slows each system down: busy over idle medians.
    for key, idle, busy in (
        ("busy_over_idle_L_up", "idle_L_up_mb_s", "busy_L_up_mb_s"),
        ("busy_over_idle_rtt_median", "rtt_median_us", "busy_rtt_median_us"),
    ):
        row = {}
        for s in systems:
            i = out[idle]["systems"].get(s, {}).get("median")
            b = out[busy]["systems"].get(s, {}).get("median")
            if i and b is not None:
                row[s] = {"values": [], "median": b / i}
        out[key] = {"label": "  busy / idle", "better": "ratio", "systems": row}
    # What else ran on the machine meanwhile, in cores.
    row = {}
    for s in systems:
        loads = [
            v["other_load"]
            for rec in records
            if rec.get("system") == s
            for v in rec.values()
            if isinstance(v, dict) and "other_load" in v
        ]
        if loads:
            row[s] = {
                "values": loads,
                "median": statistics.median(loads),
                "max": max(loads),
            }
    out["other_load"] = {"label": "other load, cores", "better": "none", "systems": row}
    return out


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


ORDER = [
    "first_byte_ms",
    "first_byte_warm_ms",
    *(f"{s}_mb_s" for s in BULK),
    *(f"{s}_cpu" for s in BULK),
    "rtt_median_us",
    "rtt_p99_us",
    "rtt_cpu_us",
    "busy_L_up_mb_s",
    "idle_L_up_mb_s",
    "busy_over_idle_L_up",
    "busy_rtt_median_us",
    "busy_over_idle_rtt_median",
    "busy_rtt_p99_us",
]


def _cell(key: str, cell: dict[str, Any] | None, digits: int, n: int | None) -> str:
    if cell is None:
        return "-"
    med = cell["median"]
    if med is None:
        return "failed"
    if n:  # a count of successes: the worst and best run
        lo, hi = int(min(cell["values"])), int(max(cell["values"]))
        text = f"{lo}/{n}" if lo == hi else f"{lo}-{hi}/{n}"
    else:
        text = f"{med:.{digits}f}"
    if "ratio_to_openssh" in cell and not key.startswith("busy_over"):
        text += f" ({cell['ratio_to_openssh']:.2f}x)"
    if cell.get("failed"):
        text += f" !{len(cell['failed'])}"
    return text


def table(summary: dict[str, Any], systems: list[str], cfg: argparse.Namespace) -> str:
    digits = {m.key: m.digits for m in metrics(cfg.conns)}
    digits.update(
        {"busy_over_idle_L_up": 2, "busy_over_idle_rtt_median": 2, "other_load": 2}
    )
    counts = {f"conc_{n}_ok": n for n in cfg.conns}
    keys = [
        *ORDER,
        *(f"conc_{n}_{x}" for n in cfg.conns for x in ("ok", "s")),
        "churn_per_s",
        "burst_drain_s",
        "burst_worst_s",
        "other_load",
    ]
    head = ["metric", *systems]
    lines = [
        [summary[k]["label"]]
        + [
            _cell(k, summary[k]["systems"].get(s), digits.get(k, 0), counts.get(k))
            for s in systems
        ]
        for k in keys
        if k in summary
    ]
    widths = [max(len(r[i]) for r in [head, *lines]) for i in range(len(head))]

    def fmt(row: list[str]) -> str:
        cells = zip(row, widths, strict=True)
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(cells)
        )

    return "\n".join(
        [
            f"medians of {cfg.runs} alternating run(s); (x) = ratio to openssh's median; "
            f"!k = k runs failed; bulk {cfg.mib} MiB (busy caller {cfg.busy_mib}), "
            "sha256 checked; "
            f"{cfg.conn_kib} KiB echoed per connection",
            fmt(head),
            fmt(["-" * w for w in widths]),
            *map(fmt, lines),
        ]
    )


def targets(summary: dict[str, Any], cfg: argparse.Namespace) -> list[dict[str, Any]]:
    """nbtunnel's targets (issue 7), each with its figure from this run and whether it is met."""

    def med(key: str, system: str = "nbtunnel") -> float | None:
        cell = summary.get(key, {}).get("systems", {}).get(system)
        return cell["median"] if cell else None

    def ratio(key: str, other: str) -> float | None:
        a, b = med(key), med(key, other)
        return a / b if a is not None and b else None

    out: list[dict[str, Any]] = []

    def check(what: str, value: float | None, ok: bool | None, shown: str) -> None:
        out.append({"target": what, "value": value, "met": ok, "shown": shown})

    for s in BULK:
        label = _bulk_label(s)
        for other, limit in (("openssh", 1.0), ("openssh-gcm", 0.8)):
            r = ratio(f"{s}_mb_s", other)
            check(
                f"{label} >= {limit}x {other}",
                r,
                None if r is None else r >= limit,
                "-" if r is None else f"{r:.2f}x",
            )
        for other in ("asyncssh", "sshtunnel"):
            r = ratio(f"{s}_mb_s", other)
            if r is not None:
                check(f"{label} ahead of {other}", r, r > 1.0, f"{r:.2f}x")
    for key, limit, what in (
        ("rtt_median_us", 1.5, "RTT median <= 1.5x openssh"),
        ("rtt_p99_us", 2.0, "RTT p99 <= 2x openssh"),
        ("first_byte_ms", 1.0, "call -> first byte <= openssh (engine spawn included)"),
        ("first_byte_warm_ms", 1.0, "call -> first byte <= openssh (engine running)"),
    ):
        a, b = (
            (med(key), med("first_byte_ms", "openssh"))
            if key.startswith("first")
            else (med(key), med(key, "openssh"))
        )
        r = a / b if a is not None and b else None
        check(
            what,
            r,
            None if r is None else r <= limit,
            "-" if r is None else f"{r:.2f}x",
        )
    for s in BULK:
        r = ratio(f"{s}_cpu", "openssh")
        check(
            f"CPU/GiB {_bulk_label(s)} <= 2x openssh",
            r,
            None if r is None else r <= 2.0,
            "-" if r is None else f"{r:.2f}x",
        )
    big = max(cfg.conns) if cfg.conns else None
    if big:
        cell = summary.get(f"conc_{big}_ok", {}).get("systems", {}).get("nbtunnel")
        worst = min(cell["values"]) if cell and cell["values"] else None
        ok = worst == big and not (cell or {}).get("failed")
        check(
            f"{big} at once: {big}/{big} in every run",
            worst,
            ok,
            f"worst run {worst}/{big}",
        )
    for key, limit, what in (
        ("burst_worst_s", 2.0, "burst: a bystander's worst round trip < 2 s"),
        ("burst_drain_s", 10.0, "burst: drained within 10 s of its end"),
    ):
        v = med(key)
        check(
            what,
            v,
            None if v is None else v < limit,
            "-" if v is None else f"{v:.2f} s",
        )
    # OwnerOnly's lookup per connection (issue 21) against the same forward
    # with it off: within 10 %.
    r = ratio("churn_per_s", "nbtunnel-anyuser")
    check(
        "new connections a second, OwnerOnly on >= 0.9x off",
        r,
        None if r is None else r >= 0.9,
        "-" if r is None else f"{r:.2f}x",
    )
    for key, limit, what, higher in (
        ("busy_over_idle_L_up", 0.8, "busy caller: throughput >= 0.8x idle", True),
        (
            "busy_over_idle_rtt_median",
            1.5,
            "busy caller: RTT median <= 1.5x idle",
            False,
        ),
    ):
        r = med(key)
        ok = None if r is None else (r >= limit if higher else r <= limit)
        check(what, r, ok, "-" if r is None else f"{r:.2f}")
    return out


def targets_text(rows: list[dict[str, Any]]) -> str:
    width = max(len(r["target"]) for r in rows)
    mark = {True: "met", False: "NOT MET", None: "n/a"}
    return "\n".join(
        f"{r['target']:{width}s}  {r['shown']:>18s}  {mark[r['met']]}" for r in rows
    )


def chart(
    summary: dict[str, Any],
    systems: list[str],
    cfg: argparse.Namespace,
    info: dict[str, Any],
    path: Path,
) -> None:
    """Each system relative to OpenSSH's ssh, turned so that right is better."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in metrics(cfg.conns) if m.chart and m.key in summary]
    # nbtunnel on top of each group, then the others as listed.
    others = sorted((s for s in systems if s != BASE), key=lambda s: s != "nbtunnel")
    colors = {
        "nbtunnel": "#d62728",
        "nbtunnel-plain": "#ff9896",
        "openssh-gcm": "#8c8c8c",
        "asyncssh": "#2ca02c",
        "sshtunnel": "#1f77b4",
    }
    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.16 * len(shown) * (len(others) + 1)))
    height = 0.8 / max(1, len(others))
    for j, s in enumerate(others):
        ys, xs = [], []
        for i, m in enumerate(shown):
            cell = summary[m.key]["systems"].get(s)
            r = cell.get("ratio_to_openssh") if cell else None
            if r:
                ys.append(i + (j - (len(others) - 1) / 2) * height)
                xs.append(r if m.better == "higher" else 1 / r)
        ax.barh(ys, xs, height=height, label=s, color=colors.get(s))
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    ax.set_yticks(range(len(shown)))
    ax.set_yticklabels([m.label.split(",")[0].strip() for m in shown], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(
        "relative to OpenSSH's ssh (1 = the same; right of the line = better)"
    )
    ax.set_title(
        f"through a real sshd, medians of {cfg.runs} alternating runs "
        f"({time.strftime('%Y-%m-%d')})\n{info['cpu']}, {info['cores']} cores, "
        f"{info['openssh'].split(',')[0]}, bulk {cfg.mib} MiB",
        fontsize=9,
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
