"""The main results as docs/performance.md shows them: the machine, the Markdown report, the files.

The cost curves' sections are ``curves_report``'s, the figures ``plots``'.
"""

from __future__ import annotations

import json
import math
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import topology_report
from bench.curves_report import hot_set_section, invalidation_section, table_size_section
from bench.formatting import LABELS, SYSTEMS, ratio, table, times
from bench.targets import verdict


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
    lines += hot_set_section(results.get("hot_set"))
    lines += table_size_section(results.get("table_sizes"))
    lines += invalidation_section(results.get("invalidation"))
    lines += topology_report.sections(results)
    if pagination and not results.get("table_sizes"):
        lines += pagination_markdown(pagination)
    if results.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in results["notes"]] + [""]
    return "\n".join(lines)


def _targets_section(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if results.get("targets"):
        lines += ["## Targets", ""]
        lines += table(
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
                        times(ratio(h["rps"], hit["floor"]["rps"])),
                        times(ratio(h["rps"], hit.get("peer", {}).get("rps"))),
                        h.get("cpu_us_per_request"),
                        times(
                            ratio(
                                h.get("cpu_us_per_request"), hit["floor"].get("cpu_us_per_request")
                            )
                        ),
                        h["p50_ms"],
                        h["p99_ms"],
                        h["errors"],
                    ]
                )
        lines += table(
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
        f"({times(ratio(auth['rps'], service['rps']))} the throughput of the service as shipped); "
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
        row.append(times(ratio(service, point["p99_ms"])))
        row.append(times(ratio(service, sweep.get("peer", [{}] * (i + 1))[i].get("p99_ms"))))
        rows.append(row)
    header = ["load (of floor max)", "offered req/s"]
    header += [f"{n} p50 / p99 / p99.9 ms" for n in names]
    header += ["service p99 x floor", "service p99 x peer"]
    return [
        "## Latency at fixed offered rates (open loop, corrected for coordinated omission)",
        "",
        *table(header, rows),
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
                times(ratio(s["seconds_to_95pct_hits"], p["seconds_to_95pct_hits"])),
                times(ratio(s["mysql_selects"], p["mysql_selects"])),
                "",
                times(ratio(s.get("selects_per_cached_page"), p.get("selects_per_cached_page"))),
                "",
                times(ratio(s["p99_ms"], p["p99_ms"])),
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
    return ["## Cold start (empty cache, Zipf page mix, fixed rate)", "", *table(header, rows)]


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
                    times(ratio(w["rss_mib_mean"], mem["floor"]["rss_mib_mean"])),
                    times(ratio(w["rss_mib_mean"], mem.get("peer", {}).get("rss_mib_mean"))),
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
    return ["## Memory", "", *table(header, rows)]


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
                    times(s["last_over_first"]),
                ]
            )
    lines += table(
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
