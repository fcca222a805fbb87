"""`make bench` in miniature, so the harness cannot rot: every phase runs for a second or two
against a real floor, peer and service, and the result files must be complete and well formed.
Speed is not asserted here; `make bench` measures it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[2]
# The first test starts MariaDB, three gunicorns and every phase (~1 min; more on a busy machine).
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]
SYSTEMS = ("floor", "peer", "service")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench-smoke")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "smoke",
            "--out",
            str(out),
            "--state",
            str(out / "state"),
            "--mysql-port",
            str(free_port()),
            "--buffer-pool",
            "128M",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, (
        f"bench smoke failed (wrk or the bench extra missing? run `make bench-tools`):\n"
        f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    )
    return out, json.loads((out / "results.json").read_text())


def test_bench_writes_json_markdown_and_plot(smoke: tuple[Path, dict[str, Any]]) -> None:
    out, _ = smoke
    markdown = (out / "results.md").read_text()
    assert markdown.startswith("# Benchmark results")
    for heading in (
        "## Targets",
        "## Cache-hit throughput",
        "## Latency at fixed offered rates",
        "## Cold start",
        "## Memory",
        "## Hit throughput vs hot-set size",
        "## Miss latency vs table size",
        "## Invalidation: commit to visible through the API",
    ):
        assert heading in markdown
    assert "Bearer-token auth on costs" in markdown
    for png in ("results", "curve-hot-set", "curve-invalidation", "curve-table-size"):
        assert (out / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def test_every_system_is_measured_closed_and_open_loop(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, results = smoke
    assert set(results["hit_throughput"]) == {*SYSTEMS, "service_redis", "service_auth"}
    assert results["hit_throughput"]["service_redis"]["rps"] > 0
    assert results["hit_throughput"]["service_auth"]["rps"] > 0
    assert results["hit_throughput"]["service_auth"]["errors"] == 0  # the token was accepted
    for name in SYSTEMS:
        assert results["hit_throughput"][name]["rps"] > 0
        points = results["latency_sweep"][name]
        assert [p["fraction_of_floor_max"] for p in points] == [0.2, 0.8]
        for point in points:
            assert point["achieved_rps"] > 0
            assert 0 < point["p50_ms"] <= point["p99_ms"] <= point["p99.9_ms"]


def test_the_service_answers_hits_after_warming(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, results = smoke
    assert results["service_x_cache_after_warm"] == "HIT"
    assert results["page_bytes"] > 100


def test_cold_start_counts_hits_and_mysql_queries(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, results = smoke
    for name in ("peer", "service"):
        cold = results["cold_start"][name]
        assert cold["requests"] > 0
        assert cold["mysql_selects"] > 0, "an emptied cache must send queries to MySQL"
        assert 0 <= cold["final_hit_rate"] <= 1
        assert cold["hit_timeline"], "hit rate over time feeds the plot"


def test_memory_per_worker_and_per_cached_page(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, results = smoke
    for name in SYSTEMS:
        memory = results["memory"][name]
        assert memory["workers"] == results["gunicorn"]["workers"]
        assert memory["rss_mib_mean"] > 0
    assert results["memory"]["service"]["redis_bytes_per_page"] > 0
    assert results["memory"]["peer"]["redis_bytes_per_page"] > 0


def test_every_target_of_the_issue_is_reported(smoke: tuple[Path, dict[str, Any]]) -> None:
    out, results = smoke
    names = [t["target"] for t in results["targets"]]
    assert names[:6] == [
        "hit throughput >= 1.0x floor",
        "server CPU per hit <= 1.0x floor's",
        "hit throughput >= 2x peer",
        "hit p99 at 80% of floor max <= 1.5x floor p99",
        "Redis hits (near cache off) >= 0.5x floor",
        "invalidation >= 50,000 changed rows/s with lag < 1 s",
    ]
    for name in (
        "cold start to 95% hits no worse than before",
        "SELECTs per cached page no worse than before",
        "RSS per worker no worse than before",
        "Redis bytes per page no worse than before",
    ):
        assert name in names
    for t in results["targets"][:5]:
        assert isinstance(t["measured"], float), t
        assert isinstance(t["met"], bool), t
    assert "| hit throughput >= 1.0x floor |" in (out / "results.md").read_text()


def test_the_hot_set_curve_sees_hits_and_redis_calls(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, results = smoke
    points = results["hot_set"]["points"]
    assert {(p["hot_set"], p["access"]) for p in points} == {
        (n, a) for n in (50, 200) for a in ("uniform", "zipf")
    }
    for p in points:
        assert p["rps"] > 0
        assert p["floor_rps"] > 0
        assert p["hit_rate"] > 0.9, "the hot set was filled into Redis first"
        assert p["redis_calls_per_request"] is not None, "read from the service's /metrics"
        assert 0 <= p["near_hit_share"] <= 1
    hot = results["hot_set"]
    assert hot["redis"]["policy"] == "noeviction", "its own Redis, with an explicit limit"
    assert [f["pages"] for f in hot["fills"]] == [50, 200], "each size adds only its new pages"
    assert all(f["verified_pages"] > 2 for f in hot["fills"]), "pages equal the loader's"
    assert hot["skipped"] == []


def test_miss_latency_is_measured_per_table_size(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, results = smoke
    (point,) = results["table_sizes"]
    assert point["orders"] == 2000
    assert point["last_page"] == 200
    assert point["middle_page"] == 100
    assert point["service"]["middle"]["x_cache"] == "MISS"
    assert point["service"]["first"]["x_cache"] == "MISS"
    assert point["service"]["last"]["x_cache"] == "MISS"


def test_invalidation_changes_become_visible_through_the_api(
    smoke: tuple[Path, dict[str, Any]],
) -> None:
    _, results = smoke
    inv = results["invalidation"]
    for point in inv["transaction_sizes"]:
        assert point["last_page_visible_s"] is not None, point
        assert point["first_page_visible_s"] is not None, point
    (rate,) = inv["write_rates"]
    assert rate["rows"] > 0
    assert rate["canaries"] > 0
    assert rate["canaries_not_visible"] == 0
