"""MySQL primary failover (issue 20): how fast the invalidator follows a promoted replica, and
whether any page is left stale after many promotions.

A MariaDB primary with two GTID replicas (semi-synchronous, AFTER_SYNC; tests/support/
mysql_replication.py) behind one address that moves on a promotion, a throwaway Redis, the
service (`serve`) and `orders-service invalidate` against that address. Under a steady writer
and two readers, each round kills the primary, promotes the most advanced replica, adds a
fresh replica so two remain, and times:

- ``promotion_s``: the failover itself (kill to the address moved), the harness's own time;
- ``first_invalidation_s``: from the address moving to the first invalidation applied from the
  new primary (a write committed right after, its cached page gone from Redis).

After the last round the writer stops, the invalidator is given time to apply everything the
primary logged, and every page the API serves is compared with MySQL in one snapshot: pages
stale after N promotions (target 0). Runs as a phase of `make bench` and alone
(`python -m bench promotion`).
"""

from __future__ import annotations

import contextlib
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import redis
import requests

from service.invalidation import gtid
from service.invalidation.changes import BinlogPosition
from tests.support import processes
from tests.support.mysql_replication import ReplicationSet
from tests.support.servers import RedisServer, free_port

PREFIX = "bench-promotion"
PAGE_SIZE = 10
ORDERS = 2000
PAGES = ORDERS // PAGE_SIZE
UPDATE = "UPDATE orders SET customer_name = %s WHERE id = %s"


class _Writer:
    """Updates through the primary's address, reconnecting across failovers."""

    def __init__(self, url_port: int) -> None:
        self.port = url_port
        self.acknowledged = 0
        self.stop = threading.Event()
        self.pause = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = random.Random(7)
        while not self.stop.is_set():
            try:
                with (
                    contextlib.closing(
                        pymysql.connect(
                            host="127.0.0.1",
                            port=self.port,
                            user="root",
                            database="orders_bench",
                            autocommit=True,
                            connect_timeout=5,
                            read_timeout=10,
                        )
                    ) as conn,
                    conn.cursor() as cur,
                ):
                    while not self.stop.is_set():
                        n = self.acknowledged
                        cur.execute(UPDATE, (f"p{n}", rng.randint(1, ORDERS)))
                        self.acknowledged += 1
                        time.sleep(0.01)
            except pymysql.MySQLError:
                self.stop.wait(0.1)

    @contextlib.contextmanager
    def running(self) -> Iterator[_Writer]:
        self._thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            self._thread.join(timeout=30)


def _readers(base: str, stop: threading.Event) -> list[threading.Thread]:
    def read(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            with contextlib.suppress(requests.RequestException):
                requests.get(f"{base}/orders/{rng.randint(1, PAGES)}", timeout=5)

    threads = [threading.Thread(target=read, args=(seed,), daemon=True) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    return threads


def _page_rows(rs: ReplicationSet) -> dict[int, list[tuple[int, str]]]:
    with contextlib.closing(rs.endpoint.connect("orders_bench")) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, customer_name FROM orders ORDER BY id")
        rows = [(int(i), str(n)) for i, n in cur.fetchall()]
    return {p: rows[(p - 1) * PAGE_SIZE : p * PAGE_SIZE] for p in range(1, PAGES + 1)}


def stale_pages(base: str, rs: ReplicationSet) -> list[int]:
    """Pages whose API answer differs from MySQL (one snapshot)."""
    expected = _page_rows(rs)
    wrong = []
    for page, rows in expected.items():
        body = requests.get(f"{base}/orders/{page}", timeout=10).json()
        served = [(int(o["id"]), str(o["customer"]["name"])) for o in body.get("orders", [])]
        if served != rows:
            wrong.append(page)
    return wrong


def _wait(condition: Any, timeout: float, what: str) -> float:
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - began


def _caught_up(cache: redis.Redis, rs: ReplicationSet) -> bool:
    """The invalidator's stored GTID state holds everything the primary has logged."""
    raw = cache.get(f"{PREFIX}:s{PAGE_SIZE}:binlog")
    if raw is None:
        return False
    stored = BinlogPosition.parse(raw.decode()).gtid
    return gtid.missing("mariadb", stored, rs.gtid_binlog_pos()) is None


def _first_invalidation(cache: redis.Redis, base: str, rs: ReplicationSet) -> float:
    """A write on the new primary right after the promotion; seconds until its page is gone."""
    began = time.monotonic()
    page = random.randint(1, PAGES)
    key = f"{PREFIX}:s{PAGE_SIZE}:page:{page}"
    _wait(
        lambda: requests.get(f"{base}/orders/{page}", timeout=5).ok and cache.exists(key),
        30,
        "the page cached on the new primary",
    )
    with contextlib.closing(rs.endpoint.connect("orders_bench")) as conn, conn.cursor() as cur:
        cur.execute(UPDATE, ("after promotion", (page - 1) * PAGE_SIZE + 1))
    _wait(lambda: not cache.exists(key), 60, "the first invalidation from the new primary")
    return time.monotonic() - began


def run(promotions: int = 20, log_dir: Path | None = None) -> dict[str, Any]:
    """``promotions`` rounds; the figures for the report."""
    logs = log_dir or Path(tempfile.mkdtemp(prefix="bench-promotion-"))
    with (
        ReplicationSet.create(replicas=2, semisync=True) as rs,
        RedisServer.create() as redis_server,
    ):
        rs.primary.create_database("orders_bench")
        env = processes.service_env(
            database_url=rs.endpoint.database("orders_bench").url,
            redis_url=redis_server.url,
            prefix=PREFIX,
            port=free_port(),
            metrics_dir=logs / "metrics",
            extra={
                "ORDERS_PAGE_SIZE": str(PAGE_SIZE),
                "ORDERS_INVALIDATOR_METRICS_PORT": str(free_port()),
                "ORDERS_LOG_LEVEL": "warning",
            },
        )
        (logs / "metrics").mkdir(parents=True, exist_ok=True)
        processes.orders_cli(env, "migrate")
        processes.orders_cli(env, "seed", "--orders", str(ORDERS))
        base = f"http://127.0.0.1:{env['ORDERS_PORT']}"
        cache = redis.Redis(host="127.0.0.1", port=redis_server.port)
        invalidator = processes.start_invalidator(env, logs / "invalidate.log")
        api = processes.start_service(env, logs / "serve.log")
        failover: list[float] = []
        first: list[float] = []
        stop = threading.Event()
        readers = _readers(base, stop)
        try:
            with _Writer(rs.endpoint.port).running() as writer:
                for _ in range(promotions):
                    _wait(lambda: writer.acknowledged > 0, 30, "writes")
                    began = time.monotonic()
                    old = rs.kill_primary()
                    rs.promote(rs.most_advanced())
                    failover.append(time.monotonic() - began)
                    first.append(_first_invalidation(cache, base, rs))
                    old.close()
                    rs.add_replica()
                writes = writer.acknowledged
            catch_up = _wait(lambda: _caught_up(cache, rs), 120, "the invalidator to catch up")
            stale = stale_pages(base, rs)
            metrics = requests.get(
                f"http://127.0.0.1:{env['ORDERS_INVALIDATOR_METRICS_PORT']}/metrics", timeout=5
            ).text
        finally:
            stop.set()
            for thread in readers:
                thread.join(timeout=10)
            api.stop(group=True)
            invalidator.stop()
    return {
        "promotions": promotions,
        "writes": writes,
        "promotion_s": _summary(failover),
        "first_invalidation_s": _summary(first),
        "catch_up_after_last_s": round(catch_up, 2),
        "pages_stale_after": len(stale),
        "stale_pages": stale[:20],
        "primary_changes_followed": _sample(metrics, "orders_invalidator_primary_changes_total"),
        "fresh_starts": _sample(metrics, 'orders_invalidator_events_total{kind="fresh_start"}'),
    }


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 3),
        "max": round(ordered[-1], 3),
        "mean": round(statistics.fmean(ordered), 3),
    }


def _sample(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def markdown(results: dict[str, Any]) -> str:
    """The figures as the report's section."""
    first, failover = results["first_invalidation_s"], results["promotion_s"]
    return "\n".join(
        [
            "## MySQL primary failover (bench/promotion.py)",
            "",
            f"{results['promotions']} promotions under writes ({results['writes']} updates), "
            "semi-sync MariaDB, two replicas, one moving address.",
            "",
            "| figure | p50 | max |",
            "| --- | --- | --- |",
            f"| promotion (kill to address moved) | {failover['p50']} s | {failover['max']} s |",
            f"| promotion to first invalidation from the new primary | {first['p50']} s "
            f"| {first['max']} s |",
            "",
            f"Pages stale after {results['promotions']} promotions: "
            f"**{results['pages_stale_after']}** (target 0); primary changes followed: "
            f"{results['primary_changes_followed']}; fresh starts (cache cleared): "
            f"{results['fresh_starts']} (the first start's only).",
        ]
    )
