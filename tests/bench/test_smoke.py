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
    ):
        assert heading in markdown
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_system_is_measured_closed_and_open_loop(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, results = smoke
    assert set(results["hit_throughput"]) == set(SYSTEMS)
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


def test_targets_are_reported_as_ratios(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, results = smoke
    names = [t["target"] for t in results["targets"]]
    assert "hit throughput >= 0.85x floor" in names
    assert "hit throughput >= 1.5x peer" in names
    assert "hit p99 at 80% of floor max <= 2x floor p99" in names
    assert all(isinstance(t["measured"], float) for t in results["targets"])
