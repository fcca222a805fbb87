"""Issue 13's targets, judged from one run's results (and the previous committed run).

Speed targets are ratios to the Flask floor or the Flask-Caching peer measured side by side in the
same run; the invalidation targets are absolute (rows/s, seconds), since there is nothing to
compare an invalidator with; "no worse than before" compares with the previous committed results
(bench/results/results.json at HEAD) within a stated tolerance, because on a shared machine even a
deterministic quantity like RSS moves a little between runs.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BASELINE = "HEAD:bench/results/results.json"


@dataclass(frozen=True)
class Rule:
    """One "no worse than before" comparison: the value now may be up to ``tolerance`` x the
    value before (plus ``slack`` in the value's own unit)."""

    target: str
    unit: str
    tolerance: float
    slack: float = 0.0

    def met(self, now: float, before: float) -> bool:
        return now <= before * self.tolerance + self.slack


NO_WORSE = {
    "cold_start_95": Rule("cold start to 95% hits no worse than before", "s", 1.25),
    "selects_per_page": Rule("SELECTs per cached page no worse than before", "", 1.0, 0.05),
    "rss": Rule("RSS per worker no worse than before", "MiB", 1.10),
    "redis_bytes": Rule("Redis bytes per page no worse than before", "B", 1.02),
}


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return round(a / b, 3)


def _row(target: str, measured: float | None, shown: str, met: bool | None) -> dict[str, Any]:
    return {"target": target, "measured": measured, "shown": shown, "met": met}


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _at_least(
    target: str, value: float | None, bound: float, shown: str | None = None
) -> dict[str, Any]:
    return _row(target, value, shown or _x(value), None if value is None else value >= bound)


def _at_most(
    target: str, value: float | None, bound: float, shown: str | None = None
) -> dict[str, Any]:
    return _row(target, value, shown or _x(value), None if value is None else value <= bound)


def _p99_at(sweep: dict[str, Any], name: str, fraction: float) -> float | None:
    for point in sweep.get(name, []):
        if point.get("fraction_of_floor_max") == fraction:
            value = point.get("p99_ms")
            return None if value is None else float(value)
    return None


def speed_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    hit = results.get("hit_throughput", {})
    floor, peer, service = hit.get("floor", {}), hit.get("peer", {}), hit.get("service", {})
    redis_hits = hit.get("service_redis", {})
    sweep = results.get("latency_sweep", {})
    return [
        _at_least("hit throughput >= 1.0x floor", ratio(service.get("rps"), floor.get("rps")), 1.0),
        _at_most(
            "server CPU per hit <= 1.0x floor's",
            ratio(service.get("cpu_us_per_request"), floor.get("cpu_us_per_request")),
            1.0,
        ),
        _at_least("hit throughput >= 2x peer", ratio(service.get("rps"), peer.get("rps")), 2.0),
        _at_most(
            "hit p99 at 80% of floor max <= 1.5x floor p99",
            ratio(_p99_at(sweep, "service", 0.8), _p99_at(sweep, "floor", 0.8)),
            1.5,
        ),
        _at_least(
            "Redis hits (near cache off) >= 0.5x floor",
            ratio(redis_hits.get("rps"), floor.get("rps")),
            0.5,
        ),
    ]


def invalidation_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    inv = results.get("invalidation")
    if not inv:
        return []
    sustained = inv.get("sustained_rows_per_s_under_1s_lag")
    points = inv.get("write_rates", [])
    offered = max((p["offered_rows_per_s"] for p in points), default=0)
    written = max((p["achieved_rows_per_s"] for p in points), default=0)
    shown = "none of the rates tried" if sustained is None else f"{sustained:,.0f} rows/s"
    rows = [
        _row(
            "invalidation >= 50,000 changed rows/s with lag < 1 s",
            sustained,
            f"{shown} committed (offered up to {offered:,.0f}, writers reached {written:,.0f})",
            sustained is not None and sustained >= 50_000,
        )
    ]
    big = [p for p in inv.get("transaction_sizes", []) if p["rows"] == 60_000]
    if big:
        seconds = big[0]["last_page_visible_s"]
        rows.append(
            _row(
                "60,000-row transaction visible within 1 s",
                seconds,
                "not visible within the timeout" if seconds is None else f"{seconds:.2f} s",
                seconds is not None and seconds < 1.0,
            )
        )
    return rows


def _before_now(results: dict[str, Any]) -> dict[str, float | None]:
    def get(*path: str) -> float | None:
        node: Any = results
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return None if node is None else float(node)

    return {
        "cold_start_95": get("cold_start", "service", "seconds_to_95pct_hits"),
        "selects_per_page": get("cold_start", "service", "selects_per_cached_page"),
        "rss": get("memory", "service", "rss_mib_mean"),
        "redis_bytes": get("memory", "service", "redis_bytes_per_page"),
    }


def no_worse_targets(
    results: dict[str, Any], baseline: dict[str, Any] | None
) -> list[dict[str, Any]]:
    now = _before_now(results)
    before = _before_now(baseline) if baseline else {}
    when = (baseline or {}).get("machine", {}).get("date", "")
    rows = []
    for key, rule in NO_WORSE.items():
        a, b = now[key], before.get(key)
        unit = f" {rule.unit}" if rule.unit else ""
        if a is None and key == "cold_start_95" and results.get("cold_start", {}).get("service"):
            rows.append(_row(rule.target, None, "95% hits not reached during the phase", False))
        elif a is None:
            rows.append(_row(rule.target, None, "not measured", None))
        elif b is None:
            rows.append(_row(rule.target, a, f"{a:,.2f}{unit} (no previous figure)", None))
        else:
            rows.append(
                _row(
                    rule.target,
                    ratio(a, b),
                    f"{a:,.2f}{unit} vs {b:,.2f}{unit} on {when} ({_x(ratio(a, b))})",
                    rule.met(a, b),
                )
            )
    return rows


def pagination_target(
    results: dict[str, Any], pagination: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Deep-page miss vs page-1 miss at the largest table measured in this run (else the last
    `make bench-pagination`)."""
    curve = [p for p in results.get("table_sizes", []) if p.get("service")]
    source = max(curve, key=lambda p: p["orders"]) if curve else pagination
    if not source or not source.get("service"):
        return []
    value = source["service"].get("last_over_first")
    return [
        _at_most(
            f"deep-page miss <= 2x page-1 miss ({source['orders']:,} orders)",
            value,
            2.0,
        )
    ]


def targets(
    results: dict[str, Any],
    pagination: dict[str, Any] | None = None,
    baseline: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every target of the issue, each with its measured value and met / not met (None: n/a)."""
    return [
        *speed_targets(results),
        *invalidation_targets(results),
        *pagination_target(results, pagination),
        *no_worse_targets(results, baseline),
    ]


def verdict(met: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "n/a"}[met]


def load_baseline(spec: str, repo: Path) -> dict[str, Any] | None:
    """``REV:PATH`` (a committed file, read with git show) or a file path; None if absent."""
    if not spec:
        return None
    path = Path(spec)
    if path.is_file():
        return dict(json.loads(path.read_text()))
    proc = subprocess.run(
        ["git", "show", spec], cwd=repo, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return None
    return dict(json.loads(proc.stdout))
