"""Dead workers' metric files are folded into archives: totals never move, scrapes stay fast.

Workers here are real processes writing through prometheus-client in multiprocess mode; the
gunicorn end-to-end version is in test_recycle.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from service.observability import multiproc

WORKER = """
import os, sys
from service.observability import metrics
n = int(sys.argv[1])
for i in range(n):
    metrics.observe_db_query("page", 0.003)
    metrics.observe_redis_call("mget", 0.0004, ok=i % 10 != 0)
metrics.count_db_error("connect")
metrics.count_near_cache_reset("disconnect")
metrics.set_breaker_state("redis", "open")
metrics.set_near_cache_entries(7)
metrics.publish_build_info("api")
print(os.getpid())
"""


def run_worker(path: Path, n: int) -> int:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(path)}
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(n)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout.strip())


def totals(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample the /metrics endpoint would show, keyed by name and labels."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in multiproc.registry(str(path)).collect():
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def counters_and_histograms(
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float],
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        k: v
        for k, v in values.items()
        if not k[0].startswith(
            ("orders_circuit_breaker_state", "orders_near_cache_entries", "orders_build_info")
        )
    }


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    path = tmp_path / "metrics"
    multiproc.prepare(str(path))
    return path


def test_retiring_workers_keeps_every_counter_and_histogram_total(metrics_dir: Path) -> None:
    pids = [run_worker(metrics_dir, n) for n in (5, 11, 17)]
    before = totals(metrics_dir)
    assert before[("orders_db_query_duration_seconds_count", (("query", "page"),))] == 33
    for pid in pids:
        multiproc.retire(pid, str(metrics_dir))
    after = totals(metrics_dir)
    assert counters_and_histograms(after) == counters_and_histograms(before)
    assert sorted(p.name for p in metrics_dir.glob("*.db")) == [
        "counter_archive.db",
        "histogram_archive.db",
    ]


def test_live_gauges_of_a_dead_worker_disappear(metrics_dir: Path) -> None:
    first, second = run_worker(metrics_dir, 1), run_worker(metrics_dir, 1)
    key = ("orders_circuit_breaker_state", (("dependency", "redis"), ("state", "open")))
    assert totals(metrics_dir)[key] == 2  # livesum: both "workers" report an open breaker
    multiproc.retire(first, str(metrics_dir))
    assert totals(metrics_dir)[key] == 1
    multiproc.retire(second, str(metrics_dir))
    assert key not in totals(metrics_dir)


def test_prepare_wipes_what_an_earlier_run_left(metrics_dir: Path) -> None:
    run_worker(metrics_dir, 3)
    (metrics_dir / "counter_archive.db.tmp").write_bytes(b"half-written")
    multiproc.prepare(str(metrics_dir))
    assert list(metrics_dir.iterdir()) == []


def clone_dead_workers(path: Path, template_pid: int, count: int) -> list[int]:
    """`count` dead workers with the same files as a real one (pids that cannot be live)."""
    fake = []
    for i in range(count):
        pid = 10_000_000 + i
        for source in path.glob(f"*_{template_pid}.db"):
            shutil.copyfile(source, path / source.name.replace(f"_{template_pid}.", f"_{pid}."))
        fake.append(pid)
    return fake


def test_a_scrape_stays_under_100_ms_after_500_recycled_workers(metrics_dir: Path) -> None:
    template = run_worker(metrics_dir, 50)
    one_worker = totals(metrics_dir)
    dead = clone_dead_workers(metrics_dir, template, 500)
    for pid in [*dead, template]:
        multiproc.retire(pid, str(metrics_dir))
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        after = totals(metrics_dir)
        timings.append(time.perf_counter() - started)
    assert min(timings) < 0.1, f"scrape took {min(timings) * 1000:.1f} ms"
    assert len(list(metrics_dir.glob("*.db"))) == 2
    key = ("orders_db_query_duration_seconds_count", (("query", "page"),))
    assert after[key] == one_worker[key] * 501


def test_scrapes_during_retirement_never_see_a_total_move(metrics_dir: Path) -> None:
    template = run_worker(metrics_dir, 20)
    dead = clone_dead_workers(metrics_dir, template, 200)
    key = ("orders_db_query_duration_seconds_count", (("query", "page"),))
    expected = totals(metrics_dir)[key]
    seen: list[float] = []
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set():
            seen.append(totals(metrics_dir)[key])

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        for pid in dead:
            multiproc.retire(pid, str(metrics_dir))
    finally:
        done.set()
        scraper.join(30)
    assert len(seen) > 5
    assert set(seen) == {expected}
