"""The arithmetic behind the benchmark's figures: percentiles, time to a hit rate, targets."""

from __future__ import annotations

import math

import pytest

from bench import report
from bench.load import open_loop_connections, parse, percentiles
from bench.phases import time_to_hit_rate


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


def _results(service_rps: float, service_p99: float) -> dict[str, object]:
    point = {
        "fraction_of_floor_max": 0.8,
        "offered_rps": 800.0,
        "p50_ms": 1.0,
        "p99.9_ms": 9.0,
        "errors": 0,
    }
    return {
        "hit_throughput": {
            "floor": {"rps": 1000.0},
            "peer": {"rps": 500.0},
            "service": {"rps": service_rps},
        },
        "latency_sweep": {
            "floor": [{**point, "p99_ms": 4.0}],
            "service": [{**point, "p99_ms": service_p99}],
        },
    }


def test_targets_compare_the_service_with_floor_and_peer_of_the_same_run() -> None:
    met = report.targets(_results(900, 8.0), {"service": {"last_over_first": 1.2}})
    assert [(t["measured"], t["met"]) for t in met] == [
        (0.9, True),
        (1.8, True),
        (2.0, True),
        (1.2, True),
    ]
    missed = report.targets(_results(600, 9.0), None)
    assert [t["met"] for t in missed] == [False, False, False]
