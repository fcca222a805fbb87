"""The measurements: each phase takes running systems and returns plain dicts for the report.

Phases interleave the systems (floor, peer, service, floor, ...) so that drift on a shared
machine hits all of them alike; only ratios from one run are compared.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psutil
import redis

from bench.load import LoadResult, open_loop_connections, run_wrk
from bench.servers import BenchError, Gunicorn, MariaDB


@dataclass(frozen=True)
class Plan:
    """How long and how hard each phase runs; ``SMOKE`` is the same plan in miniature."""

    orders: int = 100_000
    hot_pages: int = 100
    closed_seconds: float = 6
    closed_connections: int = 32
    rounds: int = 5
    sweep: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 0.9)
    sweep_seconds: float = 8
    sweep_rounds: int = 2
    cold_pages: int = 1000
    cold_zipf_s: float = 1.0
    cold_rate_fraction: float = 0.3
    cold_seconds: float = 20
    settle_seconds: float = 2
    # cost curves (bench/curves.py). The hot sets are written straight into a Redis of the
    # curve's own (bench/hot_fill.py: ~3 GB and ~2-3 min for 1M pages, which need the 10M table)
    hot_sets: tuple[int, ...] = (1000, 10_000, 100_000, 1_000_000)
    hot_set_seconds: float = 4  # per round; floor and service interleaved, median of the rounds
    hot_set_rounds: int = 3
    # the same mix first, until each worker's near cache holds its share: with 4 workers, a 1k
    # uniform hot set needed more than 3 s here to stop showing first-time Redis reads
    hot_set_warm_seconds: float = 8
    table_sizes: tuple[int, ...] = (100_000, 1_000_000, 10_000_000)
    table_samples: int = 40
    table_peer_samples: int = 2
    # invalidation (bench/invalidation.py), on a throwaway MariaDB with the binlog on
    invalidation_orders: int = 200_000
    transaction_sizes: tuple[int, ...] = (1000, 10_000, 30_000, 60_000, 100_000)
    # offered rows/s, past the 50k target so the curve shows where the lag starts to grow
    write_rates: tuple[int, ...] = (10_000, 25_000, 50_000, 75_000, 100_000, 150_000)
    write_seconds: float = 5
    rows_per_transaction: int = 5000
    writers: int = 4  # connections writing, each its own id range on its own schedule
    visible_timeout: float = 60
    # replica reads (bench/replica_reads.py), on a throwaway GTID primary with two replicas
    replica_misses: int = 1000
    replica_lag_misses: int = 200
    replica_lags: tuple[int, ...] = (0, 1, 5)
    # MySQL primary failover (bench/promotion.py): promotions in a row under writes
    promotions: int = 20
    # Redis Sentinel failovers (bench/sentinel_failover.py), on servers of its own
    failovers: int = 20


SMOKE = Plan(
    orders=2000,
    hot_pages=10,
    closed_seconds=1,
    closed_connections=8,
    rounds=1,
    sweep=(0.2, 0.8),
    sweep_seconds=1,
    sweep_rounds=1,
    cold_pages=100,
    cold_rate_fraction=0.1,
    cold_seconds=2,
    settle_seconds=1,
    hot_sets=(50, 200),
    hot_set_seconds=1,
    hot_set_warm_seconds=1,
    hot_set_rounds=1,
    table_sizes=(2000,),
    table_samples=3,
    table_peer_samples=1,
    invalidation_orders=3000,
    transaction_sizes=(100, 1000),
    write_rates=(2000,),
    write_seconds=1,
    rows_per_transaction=100,
    visible_timeout=30,
    replica_misses=50,
    replica_lag_misses=20,
    replica_lags=(0, 1),
    promotions=1,
    failovers=2,
)


def fetch(
    url: str, timeout: float = 10, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback only
    with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - loopback only
        return resp.status, dict(resp.headers.items()), resp.read()


def warm(server: Gunicorn, pages: int) -> None:
    """Request each hot page a few times, so every worker's near cache and Redis hold it."""
    for _ in range(3):
        for page in range(1, pages + 1):
            fetch(f"{server.base_url}/orders/{page}", headers=server.headers)


def cpu_seconds(server: Gunicorn) -> float:
    """User + system CPU of the master and every live worker."""
    total = 0.0
    procs = server.workers()
    if server.proc is not None:
        procs.append(psutil.Process(server.proc.pid))
    for proc in procs:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def closed_loop(systems: Sequence[Gunicorn], plan: Plan) -> dict[str, Any]:
    """Cache-hit throughput, as fast as wrk can go; median of ``plan.rounds`` interleaved rounds.

    Also the server CPU each request costs: unlike req/s on a shared two-core machine, it barely
    moves when other work competes for the cores, so it is the steadier figure to compare.
    """
    rounds: dict[str, list[tuple[LoadResult, float]]] = {s.name: [] for s in systems}
    for _ in range(plan.rounds):
        for server in systems:
            cpu_before = cpu_seconds(server)
            result = run_wrk(
                f"{server.base_url}/",
                seconds=plan.closed_seconds,
                pages=f"cycle:1:{plan.hot_pages}",
                connections=plan.closed_connections,
                headers=server.headers,
            )
            cpu = cpu_seconds(server) - cpu_before
            rounds[server.name].append((result, cpu * 1e6 / max(1, result.requests)))
    out: dict[str, Any] = {}
    for name, measured in rounds.items():
        results = [r for r, _ in measured]
        out[name] = {
            "rps": statistics.median(r.rps for r in results),
            "rps_rounds": [round(r.rps, 1) for r in results],
            "cpu_us_per_request": round(statistics.median(c for _, c in measured), 1),
            "errors": sum(r.errors for r in results),
            "p50_ms": statistics.median(r.latency_us["p50"] for r in results) / 1000,
            "p99_ms": statistics.median(r.latency_us["p99"] for r in results) / 1000,
        }
    return out


def latency_sweep(systems: Sequence[Gunicorn], floor_rps: float, plan: Plan) -> dict[str, Any]:
    """p50/p99/p99.9 at fixed offered rates (fractions of the floor's maximum), open loop.

    Each point is measured ``plan.sweep_rounds`` times, interleaved, and the run with the lower
    p99 is kept: on a shared machine other work only ever adds latency, so the better run is the
    closer estimate of what the system itself does. Every system gets the same treatment.
    """
    points: dict[str, list[dict[str, Any]]] = {s.name: [] for s in systems}
    for fraction in plan.sweep:
        rate = max(10.0, floor_rps * fraction)
        runs: dict[str, list[LoadResult]] = {s.name: [] for s in systems}
        for _ in range(plan.sweep_rounds):
            for server in systems:
                runs[server.name].append(
                    run_wrk(
                        f"{server.base_url}/",
                        seconds=plan.sweep_seconds,
                        rate=rate,
                        pages=f"cycle:1:{plan.hot_pages}",
                        connections=open_loop_connections(rate),
                    )
                )
                time.sleep(plan.settle_seconds)  # an overloaded system drains before the next
        for name, results in runs.items():
            best = min(results, key=lambda r: _or_inf(r.latency_us["p99"]))
            points[name].append(
                {
                    "fraction_of_floor_max": fraction,
                    "offered_rps": round(rate, 1),
                    "achieved_rps": round(best.rps, 1),
                    "errors": best.errors,
                    "p99_ms_rounds": [round(r.latency_us["p99"] / 1000, 3) for r in results],
                    **{f"{k}_ms": round(v / 1000, 3) for k, v in best.latency_us.items()},
                }
            )
    return points


def _or_inf(value: float) -> float:
    return float("inf") if math.isnan(value) else value


def time_to_hit_rate(
    bins: dict[int, tuple[int, int]], target: float, window: int = 10
) -> float | None:
    """Seconds from the first response until the hit rate over ``window`` 100-ms bins reaches
    ``target``; None if it never does."""
    if not bins:
        return None
    first, last = min(bins), max(bins)
    series = [bins.get(b, (0, 0)) for b in range(first, last + 1)]
    for end in range(window, len(series) + 1):
        total = sum(n for n, _ in series[end - window : end])
        hits = sum(h for _, h in series[end - window : end])
        if total and hits / total >= target:
            return end / 10
    return None


def cold_start(
    server: Gunicorn,
    *,
    clear: Callable[[], int],
    cached: Callable[[], int],
    mysql: MariaDB,
    rate: float,
    hit_header: str,
    plan: Plan,
) -> dict[str, Any]:
    """Empty cache (keys under the system's prefix deleted, processes restarted so no worker
    keeps a copy), then a Zipf page mix at a fixed rate: time to 95% hits, MySQL SELECTs issued."""
    server.stop()
    cleared = clear()
    server.start(ready_path="/healthz")
    time.sleep(plan.settle_seconds)  # let every worker finish importing before the clock starts
    before = mysql.com_select()
    result = run_wrk(
        f"{server.base_url}/",
        seconds=plan.cold_seconds,
        rate=rate,
        pages=f"zipf:{plan.cold_pages}:{plan.cold_zipf_s}:42",
        connections=open_loop_connections(rate),
        hit_header=hit_header,
    )
    selects = mysql.com_select() - before
    pages = cached()
    final = sorted(result.bins)[-10:]
    first = min(result.bins, default=0)
    return {
        "offered_rps": round(rate, 1),
        "requests": result.requests,
        "errors": result.errors,
        "keys_cleared_before": cleared,
        "seconds_to_95pct_hits": time_to_hit_rate(result.bins, 0.95),
        "seconds_to_50pct_hits": time_to_hit_rate(result.bins, 0.50),
        "final_hit_rate": round(
            sum(result.bins[b][1] for b in final) / max(1, sum(result.bins[b][0] for b in final)),
            4,
        ),
        "mysql_selects": selects,
        "pages_cached": pages,
        "selects_per_cached_page": round(selects / pages, 2) if pages else None,
        "p99_ms": round(result.latency_us["p99"] / 1000, 3),
        "hit_timeline": [
            [round((b - first) / 10, 1), n, h] for b, (n, h) in sorted(result.bins.items())
        ],
    }


def miss_latency(
    server: Gunicorn, pages: Sequence[int], n: int, clear: Callable[[int], object]
) -> list[dict[str, Any]]:
    """Single requests, each after ``clear(page)``, the pages alternating so drift hits all
    alike; three warm-up rounds first (buffer pool, connection pools)."""
    times: dict[int, list[float]] = {page: [] for page in pages}
    seen: dict[int, str | None] = {}
    for i in range(n + 3):
        for page in pages:
            clear(page)
            t0 = time.perf_counter()
            status, headers, _ = fetch(f"{server.base_url}/orders/{page}", 60)
            elapsed = (time.perf_counter() - t0) * 1000
            if status != 200:
                raise BenchError(f"{server.name} /orders/{page} answered {status}")
            seen[page] = headers.get("X-Cache")
            if i >= 3:
                times[page].append(elapsed)
    out = []
    for page in pages:
        t = sorted(times[page])
        out.append(
            {
                "page": page,
                "p50_ms": round(statistics.median(t), 3),
                "p90_ms": round(t[int(0.9 * (len(t) - 1))], 3),
                "min_ms": round(t[0], 3),
                "x_cache": seen[page],
            }
        )
    return out


def worker_memory(server: Gunicorn) -> dict[str, Any]:
    """RSS and USS of each worker (USS: pages only that worker holds, so forks share the rest)."""
    rss, uss = [], []
    for worker in server.workers():
        try:
            info = worker.memory_full_info()
        except psutil.Error:
            continue
        rss.append(info.rss / 2**20)
        uss.append(info.uss / 2**20)
    return {
        "workers": len(rss),
        "rss_mib_mean": round(statistics.fmean(rss), 1) if rss else None,
        "uss_mib_mean": round(statistics.fmean(uss), 1) if uss else None,
        "rss_mib": [round(r, 1) for r in rss],
    }


def count_keys(client: redis.Redis, pattern: str) -> int:
    return sum(1 for _ in client.scan_iter(match=pattern, count=1000))


def redis_bytes_per_page(client: redis.Redis, pattern: str, sample: int = 200) -> dict[str, Any]:
    """MEMORY USAGE of cached page entries (key, value and Redis' own overhead), mean per key."""
    sizes = []
    for key in client.scan_iter(match=pattern, count=1000):
        usage = client.memory_usage(key, samples=0)
        if usage is not None:
            sizes.append(int(usage))
        if len(sizes) >= sample:
            break
    return {
        "keys_sampled": len(sizes),
        "bytes_mean": round(statistics.fmean(sizes), 1) if sizes else None,
        "pattern": pattern,
    }


class Sampler:
    """Background sampling during a soak: worker RSS and the time one /metrics scrape takes."""

    def __init__(self, server: Gunicorn, every: float = 5.0) -> None:
        self.server, self.every = server, every
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.wait(self.every):
            t0 = time.perf_counter()
            try:
                status, _, body = fetch(f"{self.server.base_url}/metrics", timeout=30)
            except OSError:
                status, body = 0, b""
            scrape_ms = (time.perf_counter() - t0) * 1000
            memory = worker_memory(self.server)
            self.samples.append(
                {
                    "t": round(time.monotonic() - start, 1),
                    "scrape_ms": round(scrape_ms, 2),
                    "scrape_status": status,
                    "metrics_bytes": len(body),
                    "worker_pids": [w.pid for w in self.server.workers()],
                    **memory,
                }
            )

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
