"""Results as docs/performance.md shows them: one JSON document, a Markdown table, a PNG plot."""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from bench.targets import verdict

SYSTEMS = ("floor", "peer", "service", "service_redis", "service_auth")
LABELS = {
    "floor": "Flask floor (fixed bytes)",
    "peer": "Flask-Caching peer (RedisCache)",
    "service": "orders-service (as shipped)",
    "service_redis": "orders-service, ORDERS_NEAR_CACHE=false (every hit from Redis)",
    "service_auth": "orders-service, bearer-token auth on (one RS256 token, cached verification)",
}


def machine() -> dict[str, Any]:
    """What the numbers were measured on; they only compare within one run on one machine."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return round(a / b, 3)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def markdown(results: dict[str, Any], pagination: dict[str, Any] | None = None) -> str:
    m = results["machine"]
    g = results["gunicorn"]
    lines = [
        "# Benchmark results",
        "",
        f"Measured {m['date']} on {m['cpus']} CPUs ({m['cpu_model']}), Linux {m['kernel']}, "
        f"Python {m['python']}; load generator wrk on the same machine. gunicorn "
        f"{g['worker_class']}, {g['workers']} workers x {g['threads']} threads, keep-alive "
        f"{g.get('keepalive', 5)} s for every system; "
        f"{results['plan']['orders']:,} orders. Ratios compare systems measured in this one run.",
        "",
    ]
    if "loadavg_1m_before_after" in m:
        before, after = m["loadavg_1m_before_after"]
        lines += [
            f"The machine was shared: 1-minute load average {before:.1f} before and {after:.1f} "
            f"after the run; bench processes ran at nice "
            f"{m.get('nice', 0)}.",
            "",
        ]
    lines += _targets_section(results)
    lines += _hit_section(results.get("hit_throughput", {}))
    lines += _sweep_section(results.get("latency_sweep", {}))
    lines += _cold_section(results.get("cold_start", {}))
    lines += _memory_section(results.get("memory", {}))
    lines += _hot_set_section(results.get("hot_set"))
    lines += _table_size_section(results.get("table_sizes"))
    lines += _invalidation_section(results.get("invalidation"))
    if pagination and not results.get("table_sizes"):
        lines += pagination_markdown(pagination)
    if results.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in results["notes"]] + [""]
    return "\n".join(lines)


def _targets_section(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if results.get("targets"):
        lines += ["## Targets", ""]
        lines += _table(
            ["target", "measured", "verdict"],
            [[t["target"], t["shown"], verdict(t["met"])] for t in results["targets"]],
        )
    return lines


def _hit_section(hit: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if hit:
        lines += ["## Cache-hit throughput (closed loop, wrk)", ""]
        rows = []
        for name in SYSTEMS:
            if name in hit:
                h = hit[name]
                rows.append(
                    [
                        LABELS[name],
                        h["rps"],
                        _x(ratio(h["rps"], hit["floor"]["rps"])),
                        _x(ratio(h["rps"], hit.get("peer", {}).get("rps"))),
                        h.get("cpu_us_per_request"),
                        _x(
                            ratio(
                                h.get("cpu_us_per_request"), hit["floor"].get("cpu_us_per_request")
                            )
                        ),
                        h["p50_ms"],
                        h["p99_ms"],
                        h["errors"],
                    ]
                )
        lines += _table(
            [
                "system",
                "req/s",
                "x floor",
                "x peer",
                "server CPU us / req",
                "CPU x floor",
                "p50 ms",
                "p99 ms",
                "errors",
            ],
            rows,
        )
        lines += _auth_note(hit)
    return lines


def _auth_note(hit: dict[str, Any]) -> list[str]:
    """What bearer-token auth adds to a hit, from the two rows measured side by side."""
    auth, service = hit.get("service_auth"), hit.get("service")
    if not auth or not service:
        return []
    extra = auth.get("cpu_us_per_request", 0) - service.get("cpu_us_per_request", 0)
    return [
        "",
        f"Bearer-token auth on costs {extra:,.0f} us of server CPU per hit in this run "
        f"({_x(ratio(auth['rps'], service['rps']))} the throughput of the service as shipped); "
        "the check itself, first sight vs cached, is in `make bench-auth`.",
    ]


def _sweep_section(sweep: dict[str, Any]) -> list[str]:
    if not sweep:
        return []
    names = [n for n in SYSTEMS if n in sweep]
    rows = []
    for i, point in enumerate(sweep.get("floor", [])):
        row: list[Any] = [f"{point['fraction_of_floor_max']:.0%}", point["offered_rps"]]
        for name in names:
            p = sweep[name][i]
            row.append(
                f"{p['p50_ms']:.2f} / {p['p99_ms']:.2f} / {p['p99.9_ms']:.2f}"
                + (f" ({p['errors']} err)" if p["errors"] else "")
            )
        service = sweep.get("service", [{}] * (i + 1))[i].get("p99_ms")
        row.append(_x(ratio(service, point["p99_ms"])))
        row.append(_x(ratio(service, sweep.get("peer", [{}] * (i + 1))[i].get("p99_ms"))))
        rows.append(row)
    header = ["load (of floor max)", "offered req/s"]
    header += [f"{n} p50 / p99 / p99.9 ms" for n in names]
    header += ["service p99 x floor", "service p99 x peer"]
    return [
        "## Latency at fixed offered rates (open loop, corrected for coordinated omission)",
        "",
        *_table(header, rows),
    ]


def _cold_section(cold: dict[str, Any]) -> list[str]:
    if not cold:
        return []
    rows = []
    for name in ("peer", "service"):
        if name in cold:
            c = cold[name]
            rows.append(
                [
                    LABELS[name],
                    c["offered_rps"],
                    c["seconds_to_50pct_hits"],
                    c["seconds_to_95pct_hits"],
                    c["mysql_selects"],
                    c.get("pages_cached"),
                    c.get("selects_per_cached_page"),
                    c["final_hit_rate"],
                    c["p99_ms"],
                    c["errors"],
                ]
            )
    if {"peer", "service"} <= cold.keys():
        s, p = cold["service"], cold["peer"]
        rows.append(
            [
                "service x peer",
                "",
                "",
                _x(ratio(s["seconds_to_95pct_hits"], p["seconds_to_95pct_hits"])),
                _x(ratio(s["mysql_selects"], p["mysql_selects"])),
                "",
                _x(ratio(s.get("selects_per_cached_page"), p.get("selects_per_cached_page"))),
                "",
                _x(ratio(s["p99_ms"], p["p99_ms"])),
                "",
            ]
        )
    header = [
        "system",
        "offered req/s",
        "s to 50% hits",
        "s to 95% hits",
        "MySQL SELECTs",
        "pages cached",
        "SELECTs / page",
        "final hit rate",
        "p99 ms",
        "errors",
    ]
    return ["## Cold start (empty cache, Zipf page mix, fixed rate)", "", *_table(header, rows)]


def _memory_section(mem: dict[str, Any]) -> list[str]:
    if not mem:
        return []
    rows = []
    for name in SYSTEMS:
        if name in mem:
            w = mem[name]
            rows.append(
                [
                    LABELS[name],
                    w["rss_mib_mean"],
                    _x(ratio(w["rss_mib_mean"], mem["floor"]["rss_mib_mean"])),
                    _x(ratio(w["rss_mib_mean"], mem.get("peer", {}).get("rss_mib_mean"))),
                    w["uss_mib_mean"],
                    w.get("redis_bytes_per_page"),
                ]
            )
    header = [
        "system",
        "RSS MiB / worker",
        "RSS x floor",
        "RSS x peer",
        "USS MiB / worker",
        "Redis bytes / cached page",
    ]
    return ["## Memory", "", *_table(header, rows)]


def pagination_markdown(p: dict[str, Any]) -> list[str]:
    lines = [
        f"## Miss latency, page 1 vs last page ({p['orders']:,} orders, HTTP, cache cleared "
        "before every request)",
        "",
    ]
    rows = []
    for name in ("peer", "service"):
        if name in p:
            s = p[name]
            rows.append(
                [
                    LABELS[name],
                    s["samples"],
                    s["first"]["p50_ms"],
                    s["last"]["p50_ms"],
                    _x(s["last_over_first"]),
                ]
            )
    lines += _table(
        [
            "system",
            "samples each",
            "page 1 p50 ms",
            f"page {p['last_page']:,} p50 ms",
            "last / first",
        ],
        rows,
    )
    if "floor" in p:
        lines += [
            f"For scale: one request to the floor (fixed bytes) takes "
            f"{p['floor']['p50_ms']:.2f} ms at p50 on the same path.",
            "",
        ]
    return lines


def plot(results: dict[str, Any], path: Path) -> None:
    """Left: p50 and p99 vs offered load. Right: hit rate during the cold start."""
    fig = Figure(figsize=(12, 4.5))
    left, right = fig.subplots(1, 2)
    colors = {"floor": "tab:gray", "peer": "tab:orange", "service": "tab:blue"}
    for name, points in results.get("latency_sweep", {}).items():
        xs = [p["offered_rps"] for p in points]
        left.plot(xs, [p["p99_ms"] for p in points], "o-", color=colors[name], label=f"{name} p99")
        left.plot(
            xs,
            [p["p50_ms"] for p in points],
            "s--",
            color=colors[name],
            alpha=0.6,
            label=f"{name} p50",
        )
    left.set_yscale("log")
    left.set_xlabel("offered load (req/s, open loop)")
    left.set_ylabel("latency (ms, log scale)")
    left.set_title("Cache-hit latency vs offered load")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    for name, cold in results.get("cold_start", {}).items():
        timeline = cold["hit_timeline"]
        xs, rates = [], []
        for i in range(len(timeline)):
            window = timeline[max(0, i - 4) : i + 1]
            total = sum(n for _, n, _ in window)
            xs.append(timeline[i][0])
            rates.append(sum(h for _, _, h in window) / total if total else 0)
        right.plot(xs, rates, color=colors[name], label=name)
    right.axhline(0.95, color="black", linestyle=":", linewidth=1)
    right.set_xlabel("seconds since the cache was emptied")
    right.set_ylabel("hit rate (0.5 s window)")
    right.set_title("Cold start, Zipf page mix")
    right.set_ylim(0, 1.02)
    right.grid(True, alpha=0.3)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _no_nan(value: Any) -> Any:
    """NaN (a percentile of nothing) becomes null: the JSON must parse anywhere."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def write(out_dir: Path, stem: str, results: dict[str, Any], text: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    document = json.dumps(_no_nan(results), indent=2, allow_nan=False)
    (out_dir / f"{stem}.json").write_text(document + "\n")
    (out_dir / f"{stem}.md").write_text(text + "\n")


def _hot_set_section(hot: dict[str, Any] | None) -> list[str]:
    if not hot or not (hot.get("points") or hot.get("skipped")):
        return []
    rows = [
        [
            f"{p['hot_set']:,}",
            p["access"],
            p["rps"],
            p["floor_rps"],
            _x(p["x_floor"]),
            p["hit_rate"],
            p.get("near_hit_share"),
            p.get("redis_reads_per_request"),
            p["redis_calls_per_request"],
            p["cpu_us_per_request"],
            _x(p.get("cpu_x_floor")),
            p["p99_ms"],
            p.get("floor_p99_ms"),
            p["errors"],
            "-".join(f"{v:.1f}" for v in p.get("loadavg_1m", [])),
        ]
        for p in hot.get("points", [])
    ]
    header = [
        "hot set (pages)",
        "access",
        "service req/s",
        "floor req/s",
        "x floor",
        "X-Cache hit rate",
        "near-cache share",
        "Redis reads / req",
        "Redis calls / req",
        "server CPU us / req",
        "CPU x floor",
        "p99 ms",
        "floor p99 ms",
        "errors",
        "load 1m",
    ]
    fills = [
        [
            f"{f['pages']:,}",
            f"{f['pages_written']:,}",
            f["seconds"],
            f"{f['redis_used_bytes'] / 2**30:.2f}",
            f["redis_bytes_per_page"],
            f["verified_pages"],
        ]
        for f in hot.get("fills", [])
    ]
    skipped = [f"- {s['hot_set']:,} pages not measured: {s['reason']}" for s in hot["skipped"]]
    return [
        f"## Hit throughput vs hot-set size (near cache at its default, {hot['near_cache_size']:,} "
        "pages per worker)",
        "",
        "Pages 1..N of the table are written into a Redis of the curve's own first (maxmemory "
        f"{hot.get('redis', {}).get('maxmemory', 0) / 2**30:.1f} GiB, noeviction), encoded by the "
        "service's own code (bench/hot_fill.py), so a request is a near-cache hit or a Redis hit. "
        "Near-cache share = 1 - MGETs per request, from the service's own "
        "`orders_redis_call_duration_seconds` counts. The floor is measured with the same page "
        "mix, interleaved with the service's rounds (medians; CPU over all rounds).",
        "",
        *_table(header, rows),
        *(
            _table(
                [
                    "pages in Redis",
                    "written now",
                    "fill s",
                    "Redis GiB",
                    "Redis bytes / page",
                    "pages checked vs loader",
                ],
                fills,
            )
            if fills
            else []
        ),
        *skipped,
        *([""] if skipped else []),
    ]


def _table_size_section(points: list[dict[str, Any]] | None) -> list[str]:
    if not points:
        return []
    rows = []
    for p in points:
        s, peer = p.get("service", {}), p.get("peer")
        rows.append(
            [
                f"{p['orders']:,}",
                f"{p['last_page']:,}",
                s.get("first", {}).get("p50_ms"),
                s.get("middle", {}).get("p50_ms"),
                s.get("last", {}).get("p50_ms"),
                _x(s.get("last_over_first")),
                peer["first"]["p50_ms"] if peer else None,
                peer.get("middle", {}).get("p50_ms") if peer else None,
                peer["last"]["p50_ms"] if peer else None,
                _x(peer["last_over_first"]) if peer else "n/a",
            ]
        )
    header = [
        "orders in table",
        "last page",
        "service page 1 p50 ms",
        "service middle page p50 ms",
        "service last page p50 ms",
        "last / first",
        "peer page 1 p50 ms",
        "peer middle page p50 ms",
        "peer last page p50 ms",
        "peer last / first",
    ]
    return [
        "## Miss latency vs table size (HTTP, page's cache entry deleted before each request)",
        "",
        *_table(header, rows),
    ]


def curves_markdown(results: dict[str, Any]) -> str:
    """The cost-curve sections alone (``python -m bench curves``)."""
    m = results.get("machine", {})
    lines = ["# Cost curves", "", f"Measured {m.get('date', '?')}."]
    if "loadavg_before" in m:
        lines += [
            "",
            f"1-minute load average {m['loadavg_before'][0]:.1f} before and "
            f"{m['loadavg_after'][0]:.1f} after the run.",
        ]
    lines.append("")
    lines += _hot_set_section(results.get("hot_set"))
    lines += _table_size_section(results.get("table_sizes"))
    return "\n".join(lines)


def _invalidation_section(inv: dict[str, Any] | None) -> list[str]:
    if not inv:
        return []

    def s(value: Any) -> str:
        return "not visible" if value is None else f"{value:.3f}"

    size_rows = [
        [
            p["rows"],
            p["pages"],
            p["update_commit_s"],
            s(p["first_page_visible_s"]),
            s(p["last_page_visible_s"]),
            p["rows_per_s"],
        ]
        for p in inv["transaction_sizes"]
    ]
    rate_rows = [
        [
            p["offered_rows_per_s"],
            p["achieved_rows_per_s"],
            p["canaries"],
            p["canaries_not_visible"],
            s(p["lag_p50_s"]),
            s(p["lag_max_s"]),
            s(p["drain_s"]),
            p.get("invalidator_cpu_s"),
        ]
        for p in inv["write_rates"]
    ]
    writers = inv["write_rates"][0].get("writers", 1) if inv["write_rates"] else 1
    return [
        "## Invalidation: commit to visible through the API",
        "",
        f"A throwaway MariaDB with the binlog on ({inv['orders']:,} orders), the service (near "
        "cache on) and `orders-service invalidate`; a change counts as visible when a GET "
        "through the service returns it.",
        "",
        *_table(
            [
                "rows in one transaction",
                "pages touched",
                "UPDATE + COMMIT s",
                "first page visible s",
                "last page visible s",
                "rows/s (rows / last visible)",
            ],
            size_rows,
        ),
        f"Sustained writes: {writers} connection(s) committing UPDATEs of "
        f"{inv['rows_per_transaction']:,} rows on a fixed schedule (written rows/s: changed "
        "rows committed, from the affected-row counts), a one-row canary on page 1 every 0.2 s; "
        "lag = canary commit to visible; invalidator CPU over the point (writes and drain).",
        "",
        *_table(
            [
                "offered rows/s",
                "written rows/s",
                "canaries",
                "not visible in time",
                "lag p50 s",
                "lag max s",
                "drain after writes stop s",
                "invalidator CPU s",
            ],
            rate_rows,
        ),
    ]


def plot_curves(results: dict[str, Any], out: Path) -> list[Path]:
    """One PNG per cost curve that this run measured; returns the files written."""
    written: list[Path] = []
    hot = results.get("hot_set")
    if hot and hot.get("points"):
        fig = Figure(figsize=(12, 4.5))
        left, right = fig.subplots(1, 2)
        for access, style in (("uniform", "o-"), ("zipf", "s--")):
            pts = [p for p in hot["points"] if p["access"] == access]
            xs = [p["hot_set"] for p in pts]
            left.plot(
                xs,
                [p["x_floor"] for p in pts],
                style,
                color="tab:blue",
                label=f"service / floor, {access} (median of paired rounds)",
            )
            right.plot(
                xs,
                [p["hit_rate"] for p in pts],
                style,
                color="tab:green",
                label=f"X-Cache hit rate, {access}",
            )
            right.plot(
                xs,
                [
                    p["near_hit_share"]
                    if p.get("near_hit_share") is not None
                    else 1 - (p["redis_calls_per_request"] or 0)
                    for p in pts
                ],
                style,
                color="tab:purple",
                label=f"near-cache share (1 - Redis reads/req), {access}",
            )
        closed = results.get("hit_throughput", {})
        redis_only = ratio(
            closed.get("service_redis", {}).get("rps"), closed.get("floor", {}).get("rps")
        )
        left.axhline(1.0, color="tab:gray", linewidth=1, label="the floor (same page mix)")
        if redis_only:
            left.axhline(
                redis_only,
                color="tab:red",
                linestyle="-.",
                linewidth=1,
                label="service, near cache off (hot pages 1-100): every hit from Redis",
            )
        for ax in (left, right):
            ax.set_xscale("log")
            ax.set_xlabel("hot-set size (pages, log scale)")
            ax.grid(True, which="both", alpha=0.3)
            ax.axvline(
                hot["near_cache_size"],
                color="black",
                linestyle=":",
                linewidth=1,
                label="near cache size (pages per worker)",
            )
            ax.legend(fontsize=8)
        left.set_ylabel("hit throughput, x the floor (closed loop)")
        left.set_ylim(bottom=0)
        left.set_title("Hit throughput vs hot-set size")
        right.set_ylabel("fraction of requests")
        right.set_ylim(0, 1.05)
        right.set_title(f"Hit rate vs hot-set size (near cache {hot['near_cache_size']:,}/worker)")
        fig.tight_layout()
        written.append(out / "curve-hot-set.png")
        fig.savefig(written[-1], dpi=110)
    inv = results.get("invalidation")
    if inv:
        fig = Figure(figsize=(12, 4.5))
        left, right = fig.subplots(1, 2)
        # by the rate written: on a shared machine the writers may fall short of a schedule
        rates = sorted(inv["write_rates"], key=lambda p: p["achieved_rows_per_s"])
        xs = [p["achieved_rows_per_s"] for p in rates]
        left.plot(xs, [p["lag_p50_s"] for p in rates], "o-", label="canary lag p50")
        left.plot(xs, [p["lag_max_s"] for p in rates], "s--", label="canary lag max")
        left.axhline(1.0, color="black", linestyle=":", linewidth=1)
        left.axvline(50_000, color="tab:red", linestyle=":", linewidth=1, label="target 50k rows/s")
        left.set_xlabel("changed rows committed per second")
        left.set_ylabel("seconds from commit to visible")
        left.set_title("Invalidation lag vs write rate")
        sizes = inv["transaction_sizes"]
        xs = [p["rows"] for p in sizes]
        right.plot(xs, [p["first_page_visible_s"] for p in sizes], "o-", label="first page")
        right.plot(xs, [p["last_page_visible_s"] for p in sizes], "s--", label="last page")
        right.axhline(1.0, color="black", linestyle=":", linewidth=1)
        right.set_xscale("log")
        right.set_xlabel("rows changed in one transaction (log scale)")
        right.set_ylabel("seconds from commit to visible")
        right.set_title("Invalidation lag vs transaction size")
        for ax in (left, right):
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(out / "curve-invalidation.png")
        fig.savefig(written[-1], dpi=110)
    table = results.get("table_sizes")
    if table:
        fig = Figure(figsize=(6.5, 4.5))
        ax = fig.subplots()
        for name, color in (("service", "tab:blue"), ("peer", "tab:orange")):
            pts = [p for p in table if p.get(name)]
            if not pts:
                continue
            xs = [p["orders"] for p in pts]
            ax.plot(
                xs,
                [p[name]["first"]["p50_ms"] for p in pts],
                "o-",
                color=color,
                label=f"{name}, page 1",
            )
            middle = [p for p in pts if p[name].get("middle")]
            if middle:
                ax.plot(
                    [p["orders"] for p in middle],
                    [p[name]["middle"]["p50_ms"] for p in middle],
                    "^:",
                    color=color,
                    label=f"{name}, middle page",
                )
            ax.plot(
                xs,
                [p[name]["last"]["p50_ms"] for p in pts],
                "s--",
                color=color,
                label=f"{name}, last page",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("orders in the table (log scale)")
        ax.set_ylabel("miss latency p50 (ms, log scale)")
        ax.set_title("Miss latency vs table size")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(out / "curve-table-size.png")
        fig.savefig(written[-1], dpi=110)
    return written
