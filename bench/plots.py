"""The PNG figures of a run: latency and cold start, then one per cost curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from bench.formatting import ratio


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


def plot_curves(results: dict[str, Any], out: Path) -> list[Path]:
    """One PNG per cost curve that this run measured; returns the files written."""
    figures = (_hot_set_figure, _invalidation_figure, _table_size_figure)
    return [path for figure in figures if (path := figure(results, out)) is not None]


def _hot_set_figure(results: dict[str, Any], out: Path) -> Path | None:
    """Hit throughput (x the floor) and hit rates vs hot-set size."""
    hot = results.get("hot_set")
    if not (hot and hot.get("points")):
        return None
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
    path = out / "curve-hot-set.png"
    fig.savefig(path, dpi=110)
    return path


def _invalidation_figure(results: dict[str, Any], out: Path) -> Path | None:
    """Commit-to-visible lag vs write rate and vs transaction size."""
    inv = results.get("invalidation")
    if not inv:
        return None
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
    path = out / "curve-invalidation.png"
    fig.savefig(path, dpi=110)
    return path


def _table_size_figure(results: dict[str, Any], out: Path) -> Path | None:
    """Miss latency (p50) of the first, middle and last page vs table size."""
    table = results.get("table_sizes")
    if not table:
        return None
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
    path = out / "curve-table-size.png"
    fig.savefig(path, dpi=110)
    return path
