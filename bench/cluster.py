"""The cache on a Redis Cluster, side by side with one Redis server, at the store level.

Starts a throwaway six-node cluster (tests/support/redis_cluster.py) and one throwaway
``redis-server`` on the same machine, and drives both through the service's own store classes
(``ClusterCache`` and ``RedisCache``), so the figures are the cache protocol's, not HTTP's:

- balance: keys and commands per shard with every page filled and a uniform read load, for
  each group size G (``ORDERS_REDIS_CLUSTER_GROUP_PAGES``), as max/mean per shard;
- hits: page reads per second (one MGET each) from ``threads`` threads, and Redis CPU per hit
  (the servers' own CPU time, from /proc), each as a ratio of the one-server figure;
- invalidation: steps per second and rows per second (one changed row per page of a step) for
  a page step, and the cost of a totals change, which reaches every group (the fan-out G
  trades against balance);
- failover: a primary SIGKILLed; seconds until a read of a page on its shard answers again
  (the first correct page: the entry is read back as it was filled, or refilled).

``python -m bench.cluster`` runs it alone and prints JSON; ``make bench`` runs it as a phase.
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from service.breaker import CircuitBreaker
from service.cache.cluster import ClusterCache
from service.cache.entries import PageEntry, TotalsEntry
from service.cache.keys import KEEP, CacheKeys, Invalidation, SetTotals
from service.cache.store import CacheUnavailable, RedisCache, load_functions
from tests.support.redis_cluster import RedisCluster
from tests.support.servers import RedisServer

BODY = b'[{"id":1,"customer":{"id":7,"name":"x"}}]' * 10


@dataclass(frozen=True)
class ClusterPlan:
    pages: int = 4000
    group_sizes: tuple[int, ...] = (8, 32, 128)
    threads: int = 8
    seconds: float = 3.0
    steps: int = 300


SMOKE = ClusterPlan(pages=400, group_sizes=(8, 32), threads=4, seconds=0.5, steps=30)


def plan_for(*, smoke: bool) -> ClusterPlan:
    return SMOKE if smoke else ClusterPlan()


def _breaker() -> CircuitBreaker:
    return CircuitBreaker("redis", failures=1_000_000, reset_after=0.1)


def _fill(cache: RedisCache, pages: int) -> None:
    for page in range(1, pages + 1):
        lease = cache.lease_page(page)
        if lease is not None:
            cache.fill_page(page, lease.token, PageEntry.build(BODY, 2**62, lease.at_ms))
        totals = cache.lease_totals(page)
        if totals is not None:
            cache.fill_totals(totals.token, TotalsEntry(2**62, pages * 10, totals.at_ms), page)


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks
    return total


def _reads(make: Callable[[], RedisCache], pages: int, plan: ClusterPlan) -> int:
    """Page reads answered in ``plan.seconds`` by ``plan.threads`` threads (uniform pages)."""
    counts = [0] * plan.threads
    stop = threading.Event()

    def run(n: int) -> None:
        cache = make()
        rng = random.Random(n)
        while not stop.is_set():
            with contextlib.suppress(CacheUnavailable):
                cache.read(rng.randint(1, pages))
                counts[n] += 1

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(plan.threads)]
    for thread in threads:
        thread.start()
    time.sleep(plan.seconds)  # a fixed measuring window, not a wait for a condition
    stop.set()
    for thread in threads:
        thread.join(10)
    return sum(counts)


def _commands(nodes: list[redis.Redis]) -> list[int]:
    return [int(node.info("stats")["total_commands_processed"]) for node in nodes]


def _balance(values: list[int]) -> float:
    mean = sum(values) / len(values)
    return round(max(values) / mean, 3) if mean else 0.0


def _steps_per_second(cache: RedisCache, pages: int, steps: int, *, totals: bool) -> float:
    rng = random.Random(5)
    began = time.perf_counter()
    for n in range(steps):
        change = Invalidation(
            pages=frozenset(rng.randint(1, pages) for _ in range(10)),
            totals=SetTotals(TotalsEntry(2**62, pages * 10 + n, 1)) if totals else KEEP,
        )
        cache.invalidate(change)
    return round(steps / (time.perf_counter() - began), 1)


def _per_group_size(cluster: RedisCluster, plan: ClusterPlan, size: int) -> dict[str, Any]:
    client = cluster.client()
    keys = CacheKeys(f"bench{size}", 10, size)
    cache = ClusterCache(client, keys, _breaker(), hard_ttl=3600)
    _fill(cache, plan.pages)
    primaries = [node.client() for node in cluster.primaries()]
    per_shard_keys = [int(node.dbsize()) for node in primaries]
    before = _commands(primaries)
    pids = [node.pid for node in cluster.primaries() if node.pid is not None]
    cpu_before = _cpu_seconds(pids)
    hits = _reads(lambda: ClusterCache(client, keys, _breaker(), hard_ttl=3600), plan.pages, plan)
    cpu = _cpu_seconds(pids) - cpu_before
    commands = [after - first for after, first in zip(_commands(primaries), before, strict=True)]
    figures = {
        "groups": -(-plan.pages // size),
        "keys_per_shard": per_shard_keys,
        "keys_max_over_mean": _balance(per_shard_keys),
        "commands_per_shard": commands,
        "commands_max_over_mean": _balance(commands),
        "hits_per_s": round(hits / plan.seconds),
        "redis_cpu_us_per_hit": round(cpu / max(hits, 1) * 1e6, 1),
        "page_steps_per_s": _steps_per_second(cache, plan.pages, plan.steps, totals=False),
        "totals_steps_per_s": _steps_per_second(cache, plan.pages, plan.steps // 3, totals=True),
    }
    figures["page_rows_per_s"] = round(figures["page_steps_per_s"] * 10)
    for node in primaries:
        node.flushall()
        node.close()
    client.close()
    return figures


def _one_server(plan: ClusterPlan) -> dict[str, Any]:
    with RedisServer.create() as server:
        client = redis.Redis(port=server.port)
        load_functions(client)
        keys = CacheKeys("bench", 10)
        cache = RedisCache(client, keys, _breaker(), hard_ttl=3600)
        _fill(cache, plan.pages)
        pid = server.pid
        assert pid is not None
        cpu_before = _cpu_seconds([pid])
        hits = _reads(lambda: RedisCache(client, keys, _breaker(), hard_ttl=3600), plan.pages, plan)
        cpu = _cpu_seconds([pid]) - cpu_before
        figures = {
            "hits_per_s": round(hits / plan.seconds),
            "redis_cpu_us_per_hit": round(cpu / max(hits, 1) * 1e6, 1),
            "page_steps_per_s": _steps_per_second(cache, plan.pages, plan.steps, totals=False),
            "totals_steps_per_s": _steps_per_second(
                cache, plan.pages, plan.steps // 3, totals=True
            ),
        }
        client.close()
        return figures


def _failover(cluster: RedisCluster, size: int) -> float:
    """Seconds from SIGKILL of a primary to the first read of one of its pages that answers."""
    client = cluster.client()
    keys = CacheKeys("failover", 10, size)
    cache = ClusterCache(client, keys, _breaker(), hard_ttl=3600)
    _fill(cache, 200)
    page = 1
    primary = cluster.slot_owner(cluster.keyslot(keys.of_page(page).index))
    primary.kill()
    began = time.monotonic()
    while time.monotonic() - began < 60:
        try:
            if cache.read(page).page is not None:
                break
        except CacheUnavailable:
            time.sleep(0.01)
    elapsed = time.monotonic() - began
    client.close()
    return round(elapsed, 2)


def run(plan: ClusterPlan = ClusterPlan()) -> dict[str, Any]:
    """Every figure of the phase, one cluster and one server on this machine."""
    results: dict[str, Any] = {"plan": plan.__dict__}
    results["one_server"] = _one_server(plan)
    with RedisCluster.create() as cluster:
        load_functions(cluster.client())
        by_size = {size: _per_group_size(cluster, plan, size) for size in plan.group_sizes}
        results["failover_s_to_first_page"] = _failover(cluster, plan.group_sizes[0])
    one = results["one_server"]
    for figures in by_size.values():
        figures["hits_ratio_to_one_server"] = round(figures["hits_per_s"] / one["hits_per_s"], 2)
        figures["cpu_per_hit_ratio_to_one_server"] = round(
            figures["redis_cpu_us_per_hit"] / max(one["redis_cpu_us_per_hit"], 1e-9), 2
        )
    results["by_group_pages"] = by_size
    return results


def cluster_section(results: dict[str, Any] | None) -> list[str]:
    """The report's rows: one per group size, ratios to the one-server figures."""
    if not results:
        return []
    one = results["one_server"]
    lines = [
        "## Redis Cluster (store level, three shards vs one server)",
        "",
        f"One server: {one['hits_per_s']} hits/s, {one['redis_cpu_us_per_hit']} us Redis CPU per "
        f"hit, {one['page_steps_per_s']} page steps/s, {one['totals_steps_per_s']} totals "
        f"steps/s. Failover (primary killed) to the first page read back: "
        f"{results['failover_s_to_first_page']} s.",
        "",
        "| G | groups | keys max/mean | commands max/mean | hits x one | CPU/hit x one "
        "| page steps/s | rows/s | totals steps/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size, f in results["by_group_pages"].items():
        lines.append(
            f"| {size} | {f['groups']} | {f['keys_max_over_mean']} | "
            f"{f['commands_max_over_mean']} | {f['hits_ratio_to_one_server']} | "
            f"{f['cpu_per_hit_ratio_to_one_server']} | {f['page_steps_per_s']} | "
            f"{f['page_rows_per_s']} | {f['totals_steps_per_s']} |"
        )
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    plan = SMOKE if "--smoke" in args else ClusterPlan()
    print(json.dumps(run(plan), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
