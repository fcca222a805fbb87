"""Cost curves: how the service scales past the sizes the main phases use.

- hit throughput and hit rate vs hot-set size (uniform and Zipf access), near cache at its
  default size: once the hot set outgrows each worker's near cache, hits become Redis round trips
  (the pages are written into a Redis of the curve's own by bench/hot_fill.py);
- miss latency vs table size (the pagination phase at several sizes): keyset pagination over the
  block counts should keep the last page as cheap as the first at any size.

Each point is measured beside the floor of the same run, so the ratios mean something on a shared
machine; the absolute figures do not travel.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from typing import Any

import psutil
import redis
from prometheus_client.parser import text_string_to_metric_families

from bench import hot_fill, phases, report
from bench.context import Context, context, database_name, prepare_database
from bench.load import LoadResult, run_wrk
from bench.servers import Gunicorn
from service.config import Settings

REDIS_CALLS = "orders_redis_call_duration_seconds_count"


def metric_sum(server: Gunicorn, sample_name: str, **labels: str) -> float | None:
    """Sum of one sample over the label sets matching ``labels`` in the service's /metrics;
    None when absent."""
    _, _, body = phases.fetch(f"{server.base_url}/metrics", timeout=30)
    total, seen = 0.0, False
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == sample_name and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                total += sample.value
                seen = True
    return total if seen else None


def access_specs(size: int, zipf_s: float) -> dict[str, str]:
    """wrk_load.lua page pickers for one hot-set size (fixed seeds: every run draws alike)."""
    return {"uniform": f"uniform:{size}:7", "zipf": f"zipf:{size}:{zipf_s:g}:7"}


def per_request(before: float | None, after: float | None, requests: int) -> float | None:
    if before is None or after is None:
        return None
    return round((after - before) / max(1, requests), 3)


def measure_point(
    service: Gunicorn, floor: Gunicorn, size: int, access: str, *, spec: str, plan: phases.Plan
) -> dict[str, Any]:
    """One point: a few seconds of this page mix on the service first (so the near caches hold
    this mix, not the previous one), then ``plan.hot_set_rounds`` interleaved rounds of floor
    and service with it; medians of req/s and p99, CPU and Redis calls over all rounds."""
    run_wrk(f"{service.base_url}/", seconds=plan.hot_set_warm_seconds, pages=spec, connections=8)
    calls_before = metric_sum(service, REDIS_CALLS)
    reads_before = metric_sum(service, REDIS_CALLS, command="mget")
    load_before = os.getloadavg()[0]
    cpu = {"floor": 0.0, "service": 0.0}
    runs: dict[str, list[LoadResult]] = {"floor": [], "service": []}
    for _ in range(plan.hot_set_rounds):
        for name, server in (("floor", floor), ("service", service)):
            cpu_before = phases.cpu_seconds(server)
            runs[name].append(
                run_wrk(
                    f"{server.base_url}/",
                    seconds=plan.hot_set_seconds,
                    pages=spec,
                    connections=plan.closed_connections,
                    hit_header="X-Cache" if server is service else "",
                )
            )
            cpu[name] += phases.cpu_seconds(server) - cpu_before
    requests = {name: sum(r.requests for r in rs) for name, rs in runs.items()}
    rps = {name: statistics.median(r.rps for r in rs) for name, rs in runs.items()}
    x_rounds = [
        round(s.rps / f.rps, 3) if f.rps else None
        for f, s in zip(runs["floor"], runs["service"], strict=True)
    ]
    cpu_us = {name: cpu[name] * 1e6 / max(1, requests[name]) for name in cpu}
    reads = per_request(
        reads_before, metric_sum(service, REDIS_CALLS, command="mget"), requests["service"]
    )
    return {
        "hot_set": size,
        "access": access,
        "rps": round(rps["service"], 1),
        "floor_rps": round(rps["floor"], 1),
        # The ratio of each interleaved pair, then their median: other work on a shared machine
        # slows a floor round and the service round next to it alike, not whole medians.
        "x_floor": _median_ratio(x_rounds),
        "x_floor_rounds": x_rounds,
        "hit_rate": round(sum(r.hits for r in runs["service"]) / requests["service"], 4)
        if requests["service"]
        else None,
        "redis_calls_per_request": per_request(
            calls_before, metric_sum(service, REDIS_CALLS), requests["service"]
        ),
        # one MGET per request that left the near cache: the share of Redis hits (and misses)
        "redis_reads_per_request": reads,
        "near_hit_share": None if reads is None else round(max(0.0, 1 - reads), 3),
        "cpu_us_per_request": round(cpu_us["service"], 1),
        "floor_cpu_us_per_request": round(cpu_us["floor"], 1),
        "cpu_x_floor": round(cpu_us["service"] / cpu_us["floor"], 3) if cpu_us["floor"] else None,
        "p99_ms": round(statistics.median(r.latency_us["p99"] for r in runs["service"]) / 1000, 3),
        "floor_p99_ms": round(
            statistics.median(r.latency_us["p99"] for r in runs["floor"]) / 1000, 3
        ),
        "errors": sum(r.errors for r in runs["service"]),
        "loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def hot_set_curve(ctx: Context, floor: Gunicorn, plan: phases.Plan) -> dict[str, Any]:
    """Closed-loop throughput, X-Cache hit rate and Redis reads per request at each hot-set size.

    The service runs against a Redis of its own (bench/hot_fill.py), filled with pages
    1..size of the table before each size (increasing, so each fill only adds pages), so a
    request is either a near-cache hit (in this worker's memory) or a Redis hit; the service's
    own metrics say which share went to Redis.
    """
    sizes = sorted(plan.hot_sets)
    maxmemory = hot_fill.maxmemory_for(max(sizes, default=0), hot_fill.ESTIMATED_BYTES_PER_PAGE)
    out: dict[str, Any] = {
        "near_cache_size": Settings.from_env().near_cache_size,
        "redis": {"maxmemory": maxmemory, "policy": "noeviction"},
        "fills": [],
        "skipped": [],
        "points": [],
    }
    if not maxmemory:
        out["skipped"] = [
            {"hot_set": n, "reason": "less than 1 GiB of memory to spare for Redis"} for n in sizes
        ]
        return out
    server = hot_fill.own_redis(maxmemory)
    client = hot_fill.redis_client(server)
    database = database_name(hot_set_orders(plan, ctx.page_size))
    service = ctx.service("hotset", database=database, ORDERS_REDIS_URL=server.url)
    try:
        filler = hot_fill.Filler(Settings.from_env(service.env), client)
        service.start(ready_path="/healthz")
        for size in sizes:
            if reason := room_for(client, maxmemory, filler.filled, size):
                out["skipped"].append({"hot_set": size, "reason": reason})
                print(f"  hot set {size:,} pages skipped: {reason}", flush=True)
                break
            try:
                fill = filler.fill_to(size)
            except redis.ResponseError as exc:  # noeviction: OOM when a fill does not fit
                reason = f"Redis refused the fill at {filler.filled:,} pages: {exc}"
                out["skipped"].append({"hot_set": size, "reason": reason})
                break
            if filler.filled < size:
                out["skipped"].append(
                    {"hot_set": size, "reason": f"the table holds {filler.filled:,} pages"}
                )
                break
            fill["verified_pages"] = filler.verify(size)
            fill["redis_used_bytes"] = hot_fill.used_memory(client)
            fill["redis_bytes_per_page"] = round(fill["redis_used_bytes"] / size)
            out["fills"].append(fill)
            print(
                f"  hot set {size:,} pages (wrote {fill['pages_written']:,} in "
                f"{fill['seconds']:g} s, Redis {fill['redis_used_bytes'] / 2**30:.2f} GiB)",
                flush=True,
            )
            for access, spec in access_specs(size, plan.cold_zipf_s).items():
                out["points"].append(
                    measure_point(service, floor, size, access, spec=spec, plan=plan)
                )
    finally:
        service.stop()
        client.close()
        server.close()
    return out


def room_for(client: redis.Redis, maxmemory: int, filled: int, size: int) -> str | None:
    """Why ``size`` pages would not fit in the Redis (None: they fit), from the memory the pages
    filled so far take."""
    used = hot_fill.used_memory(client)
    per_page = used / filled if filled else hot_fill.ESTIMATED_BYTES_PER_PAGE
    needed = int(per_page * (size - filled))
    if used + needed > maxmemory:
        return (
            f"needs ~{(used + needed) / 2**30:.1f} GiB of Redis, maxmemory is "
            f"{maxmemory / 2**30:.1f} GiB (memory available: "
            f"{psutil.virtual_memory().available / 2**30:.1f} GiB)"
        )
    return None


def hot_set_orders(plan: phases.Plan, page_size: int = 10) -> int:
    """The smallest table the bench seeds anyway that holds the largest hot set."""
    needed = max(plan.hot_sets, default=0) * page_size
    sizes = sorted({plan.orders, *plan.table_sizes})
    return next((n for n in sizes if n >= needed), needed)


def first_vs_last(ctx: Context, orders: int, samples: int, peer_samples: int) -> dict[str, Any]:
    """Miss latency of page 1, the middle page and the last page at ``orders`` (table seeded
    beforehand).

    The near cache is off and the page's Redis entry (and lease) is deleted before each request,
    so every sample is a real miss: lease, MySQL, fill. Totals stay cached, as in production.
    """
    database = database_name(orders)
    last_page = -(-orders // ctx.page_size)
    middle_page = max(1, (last_page + 1) // 2)
    name = f"miss{orders}"
    service = ctx.service(name, database=database, ORDERS_NEAR_CACHE="false")
    peer = ctx.peer(database, name=f"peer{orders}") if peer_samples else None
    client = ctx.redis
    base = f"{ctx.prefix_of(name)}:s{ctx.page_size}:"

    def clear_service(page: int) -> None:
        client.delete(f"{base}page:{page}", f"{base}lease:{page}")

    def clear_peer(page: int) -> None:
        client.delete(f"{ctx.peer_prefix}view//orders/{page}")

    out: dict[str, Any] = {"orders": orders, "middle_page": middle_page, "last_page": last_page}
    started = [s for s in (service, peer) if s is not None]
    try:
        for server in started:
            server.start(ready_path="/healthz")
        measured = [(service, clear_service, samples)]
        if peer is not None:
            measured.append((peer, clear_peer, peer_samples))
        for server, clear, n in measured:
            first, middle, last = phases.miss_latency(server, (1, middle_page, last_page), n, clear)
            out["service" if server is service else "peer"] = {
                "samples": n,
                "first": first,
                "middle": middle,
                "last": last,
                "last_over_first": round(last["p50_ms"] / first["p50_ms"], 3),
                "middle_over_first": round(middle["p50_ms"] / first["p50_ms"], 3),
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


def run(args: argparse.Namespace, plan: phases.Plan) -> dict[str, Any]:
    """``python -m bench curves``: both cost curves alone, each beside the floor as in
    ``bench`` (the floor serves the service's page 1, as there)."""
    load_before = os.getloadavg()
    started = time.monotonic()
    skip = set(args.skip)
    results: dict[str, Any] = {"machine": report.machine(), "plan": dataclasses.asdict(plan)}
    with context(args, database_name(plan.orders)) as ctx:
        prepare_database(ctx, plan.orders)
        for orders in plan.table_sizes if "table_sizes" not in skip else ():
            prepare_database(ctx, orders)
        if "hot_set" not in skip:
            prepare_database(ctx, hot_set_orders(plan, ctx.page_size))
            service = ctx.service()
            service.start(ready_path="/healthz")
            try:
                _, _, body = phases.fetch(f"{service.base_url}/orders/1")
            finally:
                service.stop()
                ctx.clear_service()
            body_file = ctx.scratch / "page-1.json"
            body_file.write_bytes(body)
            floor = ctx.floor(body_file)
            floor.start(ready_path="/healthz")
            try:
                print("cost curve: hit throughput vs hot-set size ...", flush=True)
                results["hot_set"] = hot_set_curve(ctx, floor, plan)
            finally:
                floor.stop()
        if "table_sizes" not in skip:
            print("cost curve: miss latency vs table size ...", flush=True)
            results["table_sizes"] = table_size_curve(ctx, plan)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["machine"]["loadavg_before"] = list(load_before)
    results["machine"]["loadavg_after"] = list(os.getloadavg())
    return results


def _median_ratio(ratios: list[float | None]) -> float | None:
    known = [r for r in ratios if r is not None]
    return round(statistics.median(known), 3) if known else None
