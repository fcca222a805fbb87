"""Misses read from MySQL replicas (issue 20): what they take off the primary, what they cost.

On a throwaway GTID primary with two replicas (tests/support/mysql_replication.py), a throwaway
Redis and `orders-service invalidate` following the primary (its heartbeats keep the GTID state
the fills wait for current), the page cache runs in this process, one miss at a time:

- Primary queries per 1,000 misses: ``Com_select`` on the primary across N misses of distinct
  pages, without replicas and with them (the rest are the replicas' lag probe and the
  invalidator's own reads).
- Fill latency through a replica, GTID wait included: each miss's ``PageCache.get`` timed,
  only the misses a replica served (p50, p99).
- Share of fills that fell back to the primary at 0, 1 and 5 s of replica lag
  (``MASTER_DELAY`` on both replicas, one write a tenth of a second on the primary meanwhile,
  so the state to wait for keeps moving; ``ORDERS_DATABASE_REPLICA_WAIT`` as shipped).

``python -m bench.replica_reads --out DIR`` runs it alone; ``make bench`` runs it as a phase.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.context import free_port, orders_service
from bench.servers import VENV_BIN, BenchError

PAGE_SIZE = 10
SCHEMA = "orders_replicas"
PREFIX = "bench-replicas"


@dataclass(frozen=True)
class Misses:
    """What N misses did: primary SELECTs, fills by source, each miss's seconds by source."""

    primary_selects: int
    fills: dict[str, int]
    seconds: dict[str, list[float]]


def _com_select(server: Any) -> int:
    with contextlib.closing(server.connect()) as conn, conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'Com_select'")
        return int(cur.fetchone()[1])


def _fills() -> dict[str, float]:
    from service.observability import replica_metrics

    return {
        source: replica_metrics.CACHE_FILLS.labels(source=source)._value.get()
        for source in replica_metrics.FILL_SOURCES
    }


def _misses(env: dict[str, str], primary: Any, client: Any, pages: range) -> Misses:
    """Each page of ``pages`` once through a fresh app, every one a miss (the cached pages are
    deleted first), timed one at a time."""
    from service import close_app, create_app
    from service.config import Settings
    from service.wiring import api_services

    _forget_pages(client)
    app = create_app(Settings.from_env(env))
    cache = api_services(app).pages
    seconds: dict[str, list[float]] = {"replica": [], "primary": []}
    try:
        cache.get(1)  # the totals, once: every later miss is a page only
        before_selects, before_fills = _com_select(primary), _fills()
        for number in pages:
            ahead = _fills()
            started = time.perf_counter()
            cache.get(number)
            took = time.perf_counter() - started
            after = _fills()
            source = "replica" if after["replica"] > ahead["replica"] else "primary"
            seconds[source].append(took)
        selects = _com_select(primary) - before_selects
        fills = {k: int(v - before_fills[k]) for k, v in _fills().items()}
    finally:
        close_app(app)
    return Misses(selects, fills, seconds)


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


@contextlib.contextmanager
def _writes(database: Any, order_id: int, every: float = 0.1) -> Iterator[None]:
    """One UPDATE of ``order_id`` every ``every`` seconds on the primary until the block ends."""
    stop = threading.Event()

    def write() -> None:
        with contextlib.closing(database.connect()) as conn, conn.cursor() as cur:
            n = 0
            while not stop.wait(every):
                n += 1
                cur.execute(
                    "UPDATE orders SET customer_name = %s WHERE id = %s", (f"lag-{n}", order_id)
                )
                conn.commit()

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def _set_delay(rs: Any, seconds: int) -> None:
    for replica in rs.replicas:
        with contextlib.closing(replica.connect()) as conn, conn.cursor() as cur:
            cur.execute("STOP SLAVE")
            cur.execute(f"CHANGE MASTER TO MASTER_DELAY={int(seconds)}")
            cur.execute("START SLAVE")


def run(
    *, misses: int = 1000, lag_misses: int = 200, lags: tuple[int, ...] = (0, 1, 5)
) -> dict[str, Any]:
    """The whole phase on its own servers; everything stopped afterwards."""
    from tests.support.mysql_replication import ReplicationSet
    from tests.support.servers import RedisServer
    from tests.support.waiting import wait_for

    orders = (misses + 2) * PAGE_SIZE
    rs = ReplicationSet.create(replicas=2)
    redis_server = RedisServer.create()
    invalidator: subprocess.Popen[bytes] | None = None
    try:
        database = rs.primary.create_database(SCHEMA)
        replicas = ",".join(r.database_url(SCHEMA) for r in rs.replicas)
        env = {
            "ORDERS_DATABASE_URL": database.url,
            "ORDERS_REDIS_URL": redis_server.url,
            "ORDERS_CACHE_PREFIX": PREFIX,
            "ORDERS_PAGE_SIZE": str(PAGE_SIZE),
            "ORDERS_NEAR_CACHE": "false",
            "ORDERS_LOG_LEVEL": "warning",
        }
        orders_service("migrate", env=env)
        orders_service("seed", "--orders", str(orders), env=env)
        rs.wait_all_caught_up()
        invalidator = subprocess.Popen(
            [str(VENV_BIN / "orders-service"), "invalidate"],
            env={**os.environ, **env, "ORDERS_INVALIDATOR_METRICS_PORT": str(free_port())},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        import redis

        client = redis.Redis.from_url(redis_server.url)
        gtid_key = f"{PREFIX}:s{PAGE_SIZE}:gtid"
        wait_for(lambda: bool(client.get(gtid_key)), 60, "the invalidator's first GTID state")
        pages = range(2, misses + 2)
        with_env = {**env, "ORDERS_DATABASE_REPLICA_URLS": replicas}
        without = _misses(env, rs.primary, client, pages)
        with_replicas = _misses(with_env, rs.primary, client, pages)
        served = with_replicas.seconds["replica"]
        fallback: dict[str, Any] = {}
        for lag in lags:
            _set_delay(rs, lag)
            with _writes(database, orders):
                time.sleep(lag + 1.0)  # let the delay take hold under the write stream
                point = _misses(with_env, rs.primary, client, range(2, lag_misses + 2))
            total = sum(point.fills.values())
            fallback[f"{lag}s"] = {
                "fills": total,
                "primary_share": round(point.fills["primary"] / total, 3) if total else None,
                "replica_fill_p50_ms": _ms(_percentile(point.seconds["replica"], 0.5)),
                "primary_fill_p50_ms": _ms(_percentile(point.seconds["primary"], 0.5)),
            }
        _set_delay(rs, 0)
        return {
            "misses": misses,
            "primary_selects_per_1000_misses": {
                "without_replicas": round(without.primary_selects * 1000 / misses, 1),
                "with_replicas": round(with_replicas.primary_selects * 1000 / misses, 1),
            },
            "fills_with_replicas": with_replicas.fills,
            "replica_fill_ms": {
                "p50": _ms(_percentile(served, 0.5)),
                "p99": _ms(_percentile(served, 0.99)),
                "mean": _ms(statistics.fmean(served)) if served else None,
            },
            "primary_fill_ms_without_replicas": {
                "p50": _ms(_percentile(without.seconds["primary"], 0.5)),
                "p99": _ms(_percentile(without.seconds["primary"], 0.99)),
            },
            "fallback_by_lag": fallback,
            "replica_wait_s": float(
                next(s.default for s in _settings() if s.field == "database_replica_wait")
            ),
        }
    finally:
        if invalidator is not None and invalidator.poll() is None:
            invalidator.send_signal(signal.SIGTERM)
            try:
                invalidator.wait(15)
            except subprocess.TimeoutExpired:
                invalidator.kill()
        redis_server.close()
        rs.close()


def _settings() -> Any:
    from service.config import SETTINGS

    return SETTINGS


def _forget_pages(client: Any) -> None:
    """Every page, lease and the totals under the bench's prefix deleted (its own Redis): the
    next run's reads are all misses; the invalidator's control keys (gtid, binlog) stay."""
    base = f"{PREFIX}:s{PAGE_SIZE}:"
    for pattern in ("page:*", "lease:*"):
        for key in client.scan_iter(base + pattern, count=1000):
            client.delete(key)
    client.delete(base + "totals")


def section(results: dict[str, Any] | None) -> list[str]:
    """The report's markdown for this phase (nothing when it did not run)."""
    if not results:
        return []
    per = results["primary_selects_per_1000_misses"]
    fill = results["replica_fill_ms"]
    lines = [
        "## Replica reads (issue 20)",
        "",
        f"Primary SELECTs per 1,000 misses: {per['without_replicas']} without replicas, "
        f"{per['with_replicas']} with two (the rest: lag probes, the invalidator's reads).",
        f"Fill through a replica, GTID wait included: p50 {fill['p50']} ms, p99 {fill['p99']} ms "
        f"(the primary alone: p50 {results['primary_fill_ms_without_replicas']['p50']} ms).",
        "",
        "| Replica lag | Fills | Share read from the primary | Fill p50, replica / primary (ms) |",
        "| --- | --- | --- | --- |",
    ]
    for lag, point in results["fallback_by_lag"].items():
        lines.append(
            f"| {lag} | {point['fills']} | {point['primary_share']} | "
            f"{point.get('replica_fill_p50_ms')} / {point.get('primary_fill_p50_ms')} |"
        )
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replica_reads", description=__doc__)
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--misses", type=int, default=1000)
    parser.add_argument("--lag-misses", type=int, default=200)
    args = parser.parse_args(argv)
    try:
        results = run(misses=args.misses, lag_misses=args.lag_misses)
    except BenchError as exc:
        print(f"bench failed: {exc}")
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "replica_reads.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print("\n".join(section(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
