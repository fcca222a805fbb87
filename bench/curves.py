"""Cost curves: how the service scales past the sizes the main phases use.

- hit throughput and hit rate vs hot-set size (uniform and Zipf access), near cache at its
  default size: once the hot set outgrows each worker's near cache, hits become Redis round trips;
- miss latency vs table size (the pagination phase at several sizes): keyset pagination over the
  block counts should keep the last page as cheap as the first at any size.

Each point is measured beside the floor of the same run, so the ratios mean something on a shared
machine; the absolute figures do not travel.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench import phases
from bench.context import Context, database_name
from bench.load import run_wrk
from bench.servers import BenchError, Gunicorn
from service.config import Settings

REDIS_CALLS = "orders_redis_call_duration_seconds_count"


def metric_sum(server: Gunicorn, sample_name: str) -> float | None:
    """Sum of one sample over all label sets in the service's /metrics; None when absent."""
    _, _, body = phases.fetch(f"{server.base_url}/metrics", timeout=30)
    total, seen = 0.0, False
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == sample_name:
                total += sample.value
                seen = True
    return total if seen else None


def fill_pages(
    server: Gunicorn, pages: int, cached: Callable[[], set[int]], timeout: float
) -> dict[str, Any]:
    """Request the pages Redis does not hold yet, lowest first, until it holds 1..``pages``.

    A real hot set has been in Redis for a while (TTL one hour); filling it through the API
    (misses) is the honest way to get there. Each wrk run starts its round robin at the lowest
    missing page: a run restarting at page 1 would only re-read pages already cached.
    """
    started = time.monotonic()
    deadline = started + timeout
    while missing := sorted(set(range(1, pages + 1)) - cached()):
        if time.monotonic() > deadline:
            raise BenchError(
                f"{server.name}: {len(missing):,} of {pages:,} pages still missing after "
                f"{timeout:g} s"
            )
        first = missing[0]
        seconds = min(60.0, max(1.0, (pages - first + 1) / 200))
        result = run_wrk(
            f"{server.base_url}/",
            seconds=seconds,
            pages=f"cycle:{first}:{pages}",
            connections=32,
        )
        if result.errors:
            raise BenchError(f"{server.name}: {result.errors} errors while filling the cache")
    return {"pages": pages, "seconds": round(time.monotonic() - started, 1)}


def cached_pages(ctx: Context, name: str) -> set[int]:
    """Page numbers one service instance holds in Redis (keys ``...:page:<n>``)."""
    found = set()
    for key in ctx.redis.scan_iter(match=ctx.pages_pattern(name), count=1000):
        tail = key.rsplit(b":", 1)[-1]
        if tail.isdigit():
            found.add(int(tail))
    return found


def access_specs(size: int, zipf_s: float) -> dict[str, str]:
    """wrk_load.lua page pickers for one hot-set size (fixed seeds: every run draws alike)."""
    return {"uniform": f"uniform:{size}:7", "zipf": f"zipf:{size}:{zipf_s:g}:7"}


def hot_set_curve(
    ctx: Context, service: Gunicorn, floor: Gunicorn, plan: phases.Plan
) -> dict[str, Any]:
    """Closed-loop throughput, X-Cache hit rate and Redis calls per request at each hot-set size.

    The hot set is filled into Redis first, so a request is either a near-cache hit (in this
    worker's memory) or a Redis hit; "Redis calls per request" from the service's own metrics
    says which share went to Redis.
    """
    points: list[dict[str, Any]] = []
    for size in plan.hot_sets:
        fill = fill_pages(
            service,
            size,
            lambda: cached_pages(ctx, service.name),
            plan.fill_timeout,
        )
        print(f"  hot set {size:,} pages (filled in {fill['seconds']:g} s)", flush=True)
        specs = access_specs(size, plan.cold_zipf_s)
        for access, spec in specs.items():
            floor_run = run_wrk(
                f"{floor.base_url}/",
                seconds=plan.hot_set_seconds,
                pages=spec,
                connections=plan.closed_connections,
            )
            # one second of the same mix first, so the near caches hold this mix, not the last
            run_wrk(f"{service.base_url}/", seconds=1, pages=spec, connections=8)
            calls_before = metric_sum(service, REDIS_CALLS)
            cpu_before = phases.cpu_seconds(service)
            run = run_wrk(
                f"{service.base_url}/",
                seconds=plan.hot_set_seconds,
                pages=spec,
                connections=plan.closed_connections,
                hit_header="X-Cache",
            )
            cpu = phases.cpu_seconds(service) - cpu_before
            calls_after = metric_sum(service, REDIS_CALLS)
            calls = (
                None
                if calls_before is None or calls_after is None
                else round((calls_after - calls_before) / max(1, run.requests), 3)
            )
            points.append(
                {
                    "hot_set": size,
                    "access": access,
                    "rps": round(run.rps, 1),
                    "floor_rps": round(floor_run.rps, 1),
                    "x_floor": round(run.rps / floor_run.rps, 3) if floor_run.rps else None,
                    "hit_rate": round(run.hits / run.requests, 4) if run.requests else None,
                    "redis_calls_per_request": calls,
                    "cpu_us_per_request": round(cpu * 1e6 / max(1, run.requests), 1),
                    "p99_ms": round(run.latency_us["p99"] / 1000, 3),
                    "errors": run.errors,
                    "fill_seconds": fill["seconds"],
                }
            )
    return {"near_cache_size": Settings.from_env().near_cache_size, "points": points}


def first_vs_last(ctx: Context, orders: int, samples: int, peer_samples: int) -> dict[str, Any]:
    """Miss latency of page 1 and the last page at ``orders`` (table seeded beforehand).

    The near cache is off and the page's Redis entry (and lease) is deleted before each request,
    so every sample is a real miss: lease, MySQL, fill. Totals stay cached, as in production.
    """
    database = database_name(orders)
    last_page = -(-orders // ctx.page_size)
    name = f"miss{orders}"
    service = ctx.service(name, database=database, ORDERS_NEAR_CACHE="false")
    peer = ctx.peer(database, name=f"peer{orders}") if peer_samples else None
    client = ctx.redis
    base = f"{ctx.prefix_of(name)}:s{ctx.page_size}:"

    def clear_service(page: int) -> None:
        client.delete(f"{base}page:{page}", f"{base}lease:{page}")

    def clear_peer(page: int) -> None:
        client.delete(f"{ctx.peer_prefix}view//orders/{page}")

    out: dict[str, Any] = {"orders": orders, "last_page": last_page}
    started = [s for s in (service, peer) if s is not None]
    try:
        for server in started:
            server.start(ready_path="/healthz")
        measured = [(service, clear_service, samples)]
        if peer is not None:
            measured.append((peer, clear_peer, peer_samples))
        for server, clear, n in measured:
            first, last = phases.miss_latency(server, (1, last_page), n, clear)
            out["service" if server is service else "peer"] = {
                "samples": n,
                "first": first,
                "last": last,
                "last_over_first": round(last["p50_ms"] / first["p50_ms"], 3),
            }
    finally:
        for server in started:
            server.stop()
        ctx.clear_service(name)
    return out


def table_size_curve(ctx: Context, plan: phases.Plan) -> list[dict[str, Any]]:
    points = []
    for orders in plan.table_sizes:
        print(f"  miss latency at {orders:,} orders", flush=True)
        points.append(first_vs_last(ctx, orders, plan.table_samples, plan.table_peer_samples))
    return points
