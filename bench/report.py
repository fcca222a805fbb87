"""Results as the README shows them: one JSON document, a Markdown table, a PNG plot."""

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

SYSTEMS = ("floor", "peer", "service")
LABELS = {
    "floor": "Flask floor (fixed bytes)",
    "peer": "Flask-Caching peer (RedisCache)",
    "service": "orders-service (as shipped)",
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


def targets(results: dict[str, Any], pagination: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value and whether it is met."""
    out: list[dict[str, Any]] = []
    hit = results.get("hit_throughput", {})
    if {"floor", "peer", "service"} <= hit.keys():
        vs_floor = ratio(hit["service"]["rps"], hit["floor"]["rps"])
        vs_peer = ratio(hit["service"]["rps"], hit["peer"]["rps"])
        out.append(
            {
                "target": "hit throughput >= 0.85x floor",
                "measured": vs_floor,
                "met": vs_floor is not None and vs_floor >= 0.85,
            }
        )
        out.append(
            {
                "target": "hit throughput >= 1.5x peer",
                "measured": vs_peer,
                "met": vs_peer is not None and vs_peer >= 1.5,
            }
        )
    sweep = results.get("latency_sweep", {})
    if "floor" in sweep and "service" in sweep:
        at = [i for i, p in enumerate(sweep["floor"]) if p["fraction_of_floor_max"] == 0.8]
        if at:
            i = at[0]
            r = ratio(sweep["service"][i]["p99_ms"], sweep["floor"][i]["p99_ms"])
            out.append(
                {
                    "target": "hit p99 at 80% of floor max <= 2x floor p99",
                    "measured": r,
                    "met": r is not None and r <= 2,
                }
            )
    if pagination and pagination.get("service"):
        r = pagination["service"].get("last_over_first")
        out.append(
            {
                "target": "deep-page miss <= 2x page-1 miss",
                "measured": r,
                "met": r is not None and r <= 2,
            }
        )
    return out


def markdown(results: dict[str, Any], pagination: dict[str, Any] | None = None) -> str:
    m = results["machine"]
    g = results["gunicorn"]
    lines = [
        "# Benchmark results",
        "",
        f"Measured {m['date']} on {m['cpus']} CPUs ({m['cpu_model']}), Linux {m['kernel']}, "
        f"Python {m['python']}; load generator wrk on the same machine. gunicorn "
        f"{g['worker_class']}, {g['workers']} workers x {g['threads']} threads for every system; "
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
    if pagination:
        lines += pagination_markdown(pagination)
    if results.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in results["notes"]] + [""]
    return "\n".join(lines)


def _targets_section(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if results.get("targets"):
        lines += ["## Targets", ""]
        lines += _table(
            ["target", "measured", "met"],
            [
                [t["target"], _x(t["measured"]), "yes" if t["met"] else "**no**"]
                for t in results["targets"]
            ],
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
    return lines


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
