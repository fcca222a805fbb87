"""The arithmetic behind the benchmark's figures: percentiles, time to a hit rate, targets."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from bench import compare, hotspots, invalidation, report, sweep, targets
from bench.__main__ import hot_set_orders
from bench.arguments import sizes as _sizes
from bench.context import GunicornShape
from bench.load import open_loop_connections, parse, percentiles
from bench.phases import SMOKE, Plan, time_to_hit_rate

REPO = Path(__file__).resolve().parents[2]


def test_percentiles_use_the_nearest_rank_of_the_histogram() -> None:
    hist = {1.0: 50, 2.0: 40, 10.0: 9, 100.0: 1}
    got = percentiles(hist, (50, 90, 99, 99.9))
    assert got == {"p50": 1.0, "p90": 2.0, "p99": 10.0, "p99.9": 100.0, "max": 100.0}


def test_percentiles_of_nothing_are_nan() -> None:
    assert math.isnan(percentiles({}, (99,))["p99"])


def test_open_loop_latency_comes_from_the_scripts_histogram_not_wrks() -> None:
    raw = {
        "mode": "open",
        "duration_us": 2_000_000,
        "requests": 100,
        "bytes": 1,
        "errors": {"connect": 0, "read": 0, "write": 0, "status": 2, "timeout": 1},
        "sent": 100,
        "completed": 100,
        "non2xx": 2,
        "hits": 0,
        "wrk_latency_us": {"p50": 1, "p90": 1, "p99": 1, "p99.9": 1, "max": 1, "mean": 1},
        "hist_us": {"500": 98, "20000": 2},
        "bin_all": {"7": 60, "8": 40},
        "bin_hit": {"8": 40},
    }
    result = parse(raw)
    assert result.rps == 50
    assert result.errors == 3  # the timeout and the two non-2xx answers, each counted once
    assert result.latency_us["p99"] == 20000
    assert result.bins == {7: (60, 0), 8: (40, 40)}


def test_time_to_hit_rate_is_the_end_of_the_first_window_at_the_target() -> None:
    bins = {100 + i: (10, 0) for i in range(10)}
    bins |= {110 + i: (10, 10) for i in range(20)}
    assert time_to_hit_rate(bins, 0.95) == pytest.approx(2.0)
    assert time_to_hit_rate(bins, 0.5) == pytest.approx(1.5)


def test_a_hit_rate_never_reached_is_reported_as_none() -> None:
    assert time_to_hit_rate({1: (10, 5), 2: (10, 5)}, 0.95, window=2) is None


def test_open_loop_uses_more_connections_for_higher_rates_within_bounds() -> None:
    assert open_loop_connections(100) == 8
    assert open_loop_connections(6000) == 40
    assert open_loop_connections(100_000) == 64


def _results(
    service_rps: float = 1000.0,
    service_cpu: float = 300.0,
    service_p99: float = 6.0,
    redis_rps: float = 500.0,
) -> dict[str, Any]:
    point = {
        "fraction_of_floor_max": 0.8,
        "offered_rps": 800.0,
        "p50_ms": 1.0,
        "p99.9_ms": 9.0,
        "errors": 0,
    }
    return {
        "hit_throughput": {
            "floor": {"rps": 1000.0, "cpu_us_per_request": 300.0},
            "peer": {"rps": 500.0, "cpu_us_per_request": 600.0},
            "service": {"rps": service_rps, "cpu_us_per_request": service_cpu},
            "service_redis": {"rps": redis_rps, "cpu_us_per_request": 700.0},
        },
        "latency_sweep": {
            "floor": [
                {**point, "fraction_of_floor_max": 0.2, "p99_ms": 1.0},
                {**point, "p99_ms": 4.0},
            ],
            "service": [
                {**point, "fraction_of_floor_max": 0.2, "p99_ms": 50.0},
                {**point, "p99_ms": service_p99},
            ],
        },
    }


def _by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["target"]: r for r in rows}


def test_speed_targets_are_met_exactly_at_their_bounds() -> None:
    got = _by_name(targets.targets(_results()))
    assert got["hit throughput >= 1.0x floor"]["measured"] == 1.0
    assert got["hit throughput >= 1.0x floor"]["met"] is True
    assert got["server CPU per hit <= 1.0x floor's"]["met"] is True
    assert got["hit throughput >= 2x peer"]["met"] is True
    # the 80% point is used, not the first one in the list
    assert got["hit p99 at 80% of floor max <= 1.5x floor p99"]["measured"] == 1.5
    assert got["hit p99 at 80% of floor max <= 1.5x floor p99"]["met"] is True
    assert got["Redis hits (near cache off) >= 0.5x floor"]["met"] is True


def test_speed_targets_fail_on_the_wrong_side_of_each_bound() -> None:
    got = _by_name(
        targets.targets(_results(service_rps=990, service_cpu=301, service_p99=6.1, redis_rps=499))
    )
    assert got["hit throughput >= 1.0x floor"]["met"] is False
    assert got["hit throughput >= 2x peer"]["met"] is False  # 1.98x
    assert got["server CPU per hit <= 1.0x floor's"]["met"] is False  # more CPU is worse
    assert got["hit p99 at 80% of floor max <= 1.5x floor p99"]["met"] is False
    assert got["Redis hits (near cache off) >= 0.5x floor"]["met"] is False


def test_a_target_without_its_measurement_is_not_applicable_not_met() -> None:
    results = _results()
    del results["hit_throughput"]["service_redis"]
    got = _by_name(targets.targets(results))
    assert got["Redis hits (near cache off) >= 0.5x floor"]["met"] is None
    assert targets.verdict(None) == "n/a"
    assert targets.verdict(False) == "**not met**"


def _rate(offered: float, achieved: float, lag_max: float | None) -> dict[str, Any]:
    return {"offered_rows_per_s": offered, "achieved_rows_per_s": achieved, "lag_max_s": lag_max}


def test_sustained_rate_is_the_committed_rate_with_every_canary_under_a_second() -> None:
    points = [
        _rate(10_000, 9_990, 0.1),
        _rate(25_000, 24_000, 0.9),
        _rate(50_000, 40_000, 0.2),  # the writers fell short: 40k were committed, and applied
        _rate(75_000, 74_000, 1.0),  # lag of a full second: not under one
        _rate(100_000, 99_000, None),  # a canary never became visible
    ]
    assert invalidation.sustained_rate(points) == 40_000
    assert invalidation.sustained_rate([_rate(10_000, 9_000, 1.5)]) is None


def test_lag_summary_reports_invisible_canaries_and_no_maximum_for_them() -> None:
    point = invalidation.lag_summary(1000.0, 5000, 5.0, [0.1, 0.3, None], None)
    assert point["achieved_rows_per_s"] == 1000.0
    assert point["canaries_not_visible"] == 1
    assert point["lag_p50_s"] == 0.2
    assert point["lag_max_s"] is None
    complete = invalidation.lag_summary(1000.0, 5000, 5.0, [0.1, 0.3, 0.2], 0.05)
    assert complete["lag_max_s"] == 0.3


def test_invalidation_targets_use_the_sustained_rate_and_the_60k_row_transaction() -> None:
    results = {
        "invalidation": {
            "sustained_rows_per_s_under_1s_lag": 52_000.0,
            "write_rates": [_rate(50_000, 52_000, 0.5)],
            "transaction_sizes": [
                {"rows": 1000, "last_page_visible_s": 0.05},
                {"rows": 60_000, "last_page_visible_s": 4.9},
            ],
        }
    }
    got = _by_name(targets.invalidation_targets(results))
    assert got["invalidation >= 50,000 changed rows/s with lag < 1 s"]["met"] is True
    assert got["60,000-row transaction visible within 1 s"]["measured"] == 4.9
    assert got["60,000-row transaction visible within 1 s"]["met"] is False
    results["invalidation"]["sustained_rows_per_s_under_1s_lag"] = None
    results["invalidation"]["transaction_sizes"][1]["last_page_visible_s"] = None
    got = _by_name(targets.invalidation_targets(results))
    assert got["invalidation >= 50,000 changed rows/s with lag < 1 s"]["met"] is False
    assert got["60,000-row transaction visible within 1 s"]["met"] is False


def test_the_transaction_pages_follow_from_ascending_ids() -> None:
    assert invalidation.pages_of(11, 60_010, 10) == (2, 6001)
    assert invalidation.pages_of(1, 1, 10) == (1, 1)


def _measured(cold: float | None, selects: float, rss: float, redis_bytes: float) -> dict[str, Any]:
    return {
        "machine": {"date": "2026-11-26 14:33 UTC"},
        "cold_start": {
            "service": {"seconds_to_95pct_hits": cold, "selects_per_cached_page": selects}
        },
        "memory": {"service": {"rss_mib_mean": rss, "redis_bytes_per_page": redis_bytes}},
    }


def test_no_worse_than_before_compares_with_the_previous_run_within_tolerance() -> None:
    before = _measured(3.6, 2.0, 72.5, 2908.5)
    same = _by_name(targets.no_worse_targets(_measured(4.5, 2.05, 79.7, 2966.0), before))
    assert all(r["met"] for r in same.values()), same
    worse = _by_name(targets.no_worse_targets(_measured(4.6, 2.1, 80.0, 2970.0), before))
    assert not any(r["met"] for r in worse.values()), worse
    cold = worse["cold start to 95% hits no worse than before"]
    assert "4.60 s vs 3.60 s on 2026-11-26 14:33 UTC" in cold["shown"]


def test_no_worse_without_a_baseline_is_not_applicable_and_never_reached_is_not_met() -> None:
    got = _by_name(targets.no_worse_targets(_measured(None, 2.0, 70, 2900), None))
    assert got["RSS per worker no worse than before"]["met"] is None
    assert got["cold start to 95% hits no worse than before"]["met"] is False


def test_the_committed_results_are_the_default_baseline() -> None:
    baseline = targets.load_baseline(targets.BASELINE, REPO)
    assert baseline is not None
    assert baseline["memory"]["service"]["rss_mib_mean"] > 0
    assert targets.load_baseline("HEAD:no/such/file.json", REPO) is None


def test_the_deep_page_target_uses_the_largest_table_of_this_run() -> None:
    results = {
        "table_sizes": [
            {"orders": 100_000, "service": {"last_over_first": 3.0}},
            {"orders": 1_000_000, "service": {"last_over_first": 1.1}},
        ]
    }
    (row,) = targets.pagination_target(results, {"orders": 10, "service": {"last_over_first": 9}})
    assert row["target"] == "deep-page miss <= 2x page-1 miss (1,000,000 orders)"
    assert row["met"] is True


def test_the_sweep_varies_one_setting_at_a_time_and_names_the_winners() -> None:
    base = GunicornShape(workers=4, threads=4)
    shapes = sweep.grid(base, "workers=2,4;threads=8;worker_class=sync")
    assert shapes[0] == base
    assert [(s.workers, s.threads, s.worker_class) for s in shapes[1:]] == [
        (2, 4, "gthread"),
        (4, 8, "gthread"),
        (4, 4, "sync"),
    ]
    with pytest.raises(ValueError, match="unknown gunicorn setting"):
        sweep.grid(base, "backlog=10")
    rows = [
        {
            "shape": "a",
            "service_rps": 100,
            "service_x_floor": 0.9,
            "service_cpu_us": 300,
            "errors": 0,
        },
        {
            "shape": "b",
            "service_rps": 120,
            "service_x_floor": 0.8,
            "service_cpu_us": 310,
            "errors": 0,
        },
        {
            "shape": "c",
            "service_rps": 200,
            "service_x_floor": 1.5,
            "service_cpu_us": 100,
            "errors": 3,
        },
    ]
    assert sweep.best(rows) == {"service_rps": "b", "service_x_floor": "a", "service_cpu": "a"}


def test_compare_reports_b_over_a() -> None:
    measured = {
        "floor": {"rps": 1000.0, "cpu_us_per_request": 200.0},
        "rev_a": {"rps": 800.0, "cpu_us_per_request": 300.0},
        "rev_b": {"rps": 880.0, "cpu_us_per_request": 270.0},
    }
    got = compare.ratios(measured)
    assert got["rps_b_over_a"] == 1.1
    assert got["cpu_b_over_a"] == 0.9
    assert got["rps_b_over_floor"] == 0.88


def test_sizes_accept_suffixes_and_the_hot_set_table_is_one_the_bench_seeds() -> None:
    assert _sizes("1000, 10k,1M,100_000") == [1000, 10_000, 1_000_000, 100_000]
    assert hot_set_orders(Plan()) == 10_000_000  # 1M pages of 10: the 10M table seeded anyway
    assert hot_set_orders(Plan(hot_sets=(30_000,))) == 1_000_000
    assert hot_set_orders(SMOKE) == 2000
    assert hot_set_orders(Plan(hot_sets=(1_000_000,))) == 10_000_000


def test_the_report_shows_every_target_with_its_verdict() -> None:
    rows = targets.targets(_results())
    results = {
        "machine": report.machine(),
        "gunicorn": {"worker_class": "gthread", "workers": 4, "threads": 4},
        "plan": {"orders": 1000},
        "targets": rows,
    }
    text = report.markdown(results)
    for row in rows:
        assert f"| {row['target']} | {row['shown']} | {targets.verdict(row['met'])} |" in text
    assert "| hit throughput >= 1.0x floor | 1.00x | met |" in text


def test_the_profile_difference_is_per_layer_service_minus_floor(tmp_path: Path) -> None:
    floor = tmp_path / "floor.collapsed"
    floor.write_text(
        "run (gunicorn/workers/gthread.py:1);handle (gunicorn/http/parser.py:2) 60\n"
        "run (gunicorn/workers/gthread.py:1);wsgi_app (flask/app.py:3) 40\n"
    )
    service = tmp_path / "service.collapsed"
    service.write_text(
        "run (gunicorn/workers/gthread.py:1);handle (gunicorn/http/parser.py:2) 40\n"
        "run (gunicorn/workers/gthread.py:1);wsgi_app (flask/app.py:3) 30\n"
        "run (gunicorn/workers/gthread.py:1);log (service/observability/web.py:9) 30\n"
    )
    text = "\n".join(hotspots.difference((floor, 100.0), (service, 200.0)))
    assert "service 200 us, floor 100 us (+100 us)" in text
    # observability: 30% of 200 us, none in the floor; listed first as the largest difference
    rows = [line for line in text.splitlines() if line.startswith("| ") and "~us" not in line]
    assert rows[0] == "| observability: logging, metrics, tracing hooks | 0 | 60 | +60 |"
    assert "| gunicorn: parse, Date header, write, thread pool | 60 | 80 | +20 |" in rows
    assert "| Flask/Werkzeug: routing, contexts, Response | 40 | 60 | +20 |" in rows


def test_the_replica_reads_section_shows_each_lag_point() -> None:
    from bench import replica_reads

    text = "\n".join(
        replica_reads.section(
            {
                "primary_selects_per_1000_misses": {"without_replicas": 2000, "with_replicas": 30},
                "replica_fill_ms": {"p50": 4.2, "p99": 21.0},
                "primary_fill_ms_without_replicas": {"p50": 3.8},
                "fallback_by_lag": {"0s": {"fills": 200, "primary_share": 0.0}},
            }
        )
    )
    assert "2000 without replicas, 30 with two" in text
    assert "| 0s | 200 | 0.0 | None / None |" in text
    assert replica_reads.section(None) == []
