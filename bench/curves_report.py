"""The cost curves' Markdown: hit throughput vs hot-set size, miss latency vs table size, and
invalidation lag vs write rate and transaction size."""

from __future__ import annotations

from typing import Any

from bench.formatting import table, times


def hot_set_section(hot: dict[str, Any] | None) -> list[str]:
    if not hot or not (hot.get("points") or hot.get("skipped")):
        return []
    rows = [
        [
            f"{p['hot_set']:,}",
            p["access"],
            p["rps"],
            p["floor_rps"],
            times(p["x_floor"]),
            p["hit_rate"],
            p.get("near_hit_share"),
            p.get("redis_reads_per_request"),
            p["redis_calls_per_request"],
            p["cpu_us_per_request"],
            times(p.get("cpu_x_floor")),
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
        *table(header, rows),
        *(
            table(
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


def table_size_section(points: list[dict[str, Any]] | None) -> list[str]:
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
                times(s.get("last_over_first")),
                peer["first"]["p50_ms"] if peer else None,
                peer.get("middle", {}).get("p50_ms") if peer else None,
                peer["last"]["p50_ms"] if peer else None,
                times(peer["last_over_first"]) if peer else "n/a",
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
        *table(header, rows),
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
    lines += hot_set_section(results.get("hot_set"))
    lines += table_size_section(results.get("table_sizes"))
    return "\n".join(lines)


def invalidation_section(inv: dict[str, Any] | None) -> list[str]:
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
        *table(
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
        *table(
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
