"""Each interleaving of a write, its invalidation and a fill from a replica, forced one at a time.

A real GTID primary and replica (tests/support/mysql_replication.py) and a real Redis; the page
cache runs in this process (``create_app``), and the invalidator's step is applied by hand with
the write's GTID state (``INVALIDATE`` with ARGV[9], as ``steps.py`` sends it), so each order of
events is exact. Lag is ``STOP SLAVE SQL_THREAD``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask

from service import close_app, create_app
from service.cache.aside import PageCache
from service.cache.keys import Invalidation
from service.config import Settings
from service.observability import replica_metrics
from service.wiring import api_services
from tests.support.mysql_replication import ReplicationSet
from tests.support.processes import clean_env, orders_service
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.faults, pytest.mark.slow]
SCHEMA = "orders_interleave"
PAGE = 2


@dataclass
class Rig:
    rs: ReplicationSet
    app: Flask

    @property
    def cache(self) -> PageCache:
        return api_services(self.app).pages

    def rename(self, name: str) -> str:
        """Rename the first order of PAGE on the primary; the primary's GTID state after it."""
        with contextlib.closing(self.rs.primary.connect(SCHEMA)) as conn, conn.cursor() as cur:
            cur.execute("SELECT id FROM orders ORDER BY id LIMIT 1 OFFSET %s", ((PAGE - 1) * 10,))
            (first,) = cur.fetchone()
            cur.execute("UPDATE orders SET customer_name = %s WHERE id = %s", (name, first))
            conn.commit()
        return self.rs.gtid_binlog_pos()

    def drop(self, state: str, *, checkpoint: bool = True) -> None:
        """The invalidator's step for the write: the page and its lease, the state and (as a
        live invalidator's heartbeat would) a checkpoint of now."""
        seconds, micros = self.cache.redis.time()
        now = seconds * 1000 + micros // 1000 - 1
        self.cache.redis.invalidate(
            Invalidation(
                pages=frozenset({PAGE}), gtid=state, checkpoint_ms=now if checkpoint else None
            )
        )

    def served_name(self) -> str:
        return self.first_name(self.cache.get(PAGE).entry.orders_json)

    @staticmethod
    def first_name(body: bytes) -> str:
        import orjson

        return str(orjson.loads(body)[0]["customer"]["name"])

    @property
    def replica(self) -> Any:
        return self.rs.replicas[0]


def _fills(source: str) -> float:
    return float(replica_metrics.CACHE_FILLS.labels(source=source)._value.get())


@pytest.fixture(scope="module")
def replication() -> Iterator[tuple[ReplicationSet, RedisServer]]:
    with ReplicationSet.create(replicas=1) as rs, RedisServer.create() as redis_server:
        database = rs.primary.create_database(SCHEMA)
        env = clean_env(ORDERS_DATABASE_URL=database.url, ORDERS_PAGE_SIZE="10")
        orders_service("migrate", env=env)
        orders_service("seed", "--orders", "100", env=env)
        rs.wait_all_caught_up()
        yield rs, redis_server


@pytest.fixture
def rig(
    replication: tuple[ReplicationSet, RedisServer], request: pytest.FixtureRequest
) -> Iterator[Rig]:
    rs, redis_server = replication
    settings = Settings.from_env(
        {
            "ORDERS_DATABASE_URL": rs.primary.database_url(SCHEMA),
            "ORDERS_DATABASE_REPLICA_URLS": rs.replicas[0].database_url(SCHEMA),
            "ORDERS_REDIS_URL": redis_server.url,
            "ORDERS_CACHE_PREFIX": f"il-{request.node.name[:40]}",
            "ORDERS_PAGE_SIZE": "10",
            "ORDERS_NEAR_CACHE": "false",
            "ORDERS_CACHE_TIMEOUT": "2",
        }
    )
    app = create_app(settings)
    made = Rig(rs, app)
    made.drop(rs.gtid_binlog_pos())  # the invalidator's state as of now
    made.cache.get(1)  # the totals cached: each miss below loads its page only
    try:
        yield made
    finally:
        close_app(app)
        rs.start_applying(rs.replicas[0])
        rs.wait_all_caught_up()


def test_drop_then_fill_from_a_lagging_replica_reads_the_primary(rig: Rig) -> None:
    """Write, drop, miss: the lease hands out the write's state, the replica has not applied
    it within the wait, the fill reads the primary and stores the new row."""
    rig.rs.stop_applying(rig.replica)
    rig.drop(rig.rename("Dropped First"))
    primary_fills = _fills("primary")
    assert rig.served_name() == "Dropped First"
    assert _fills("primary") == primary_fills + 1
    assert rig.served_name() == "Dropped First"  # the stored copy, a hit


def test_a_lease_taken_before_the_drop_stores_nothing_it_read_on_the_replica(rig: Rig) -> None:
    """Miss and read the replica (old row); the write commits and is dropped; the fill is
    refused (its lease went with the drop); the next miss reads the new row."""
    read_done, dropped = threading.Event(), threading.Event()
    real_load = rig.cache._load_page

    def slow(page: int, state: str = "") -> bytes:
        body = real_load(page, state)
        read_done.set()
        assert dropped.wait(30)
        return body

    rig.cache._load_page = slow  # type: ignore[method-assign]
    replica_fills = _fills("replica")
    with ThreadPoolExecutor(1) as pool:
        miss = pool.submit(rig.cache.get, PAGE)
        assert read_done.wait(30)
        rig.rs.stop_applying(rig.replica)
        rig.drop(rig.rename("Written During The Fill"))
        dropped.set()
        old = miss.result(30)
    rig.cache._load_page = real_load  # type: ignore[method-assign]
    assert _fills("replica") == replica_fills + 1  # the first read did come from the replica
    assert rig.first_name(old.entry.orders_json) != "Written During The Fill"
    assert rig.served_name() == "Written During The Fill"  # not the old row: refilled


def test_a_replica_that_catches_up_within_the_wait_serves_the_fill(rig: Rig) -> None:
    """The wait is a wait, not only a check: the replica applies the write while the fill waits
    on it, and the replica serves the new row."""
    rig.rs.stop_applying(rig.replica)
    rig.drop(rig.rename("Applied During The Wait"))
    started = threading.Timer(0.05, rig.rs.start_applying, (rig.replica,))
    replica_fills = _fills("replica")
    # a generous wait: the replica's SQL thread restarts inside it on a loaded machine
    api_services(rig.app).reads._wait = 20.0
    started.start()
    try:
        assert rig.served_name() == "Applied During The Wait"
    finally:
        started.join()
    assert _fills("replica") == replica_fills + 1


def test_an_invalidator_gone_quiet_sends_fills_to_the_primary(rig: Rig) -> None:
    """The state says nothing about writes nobody invalidated: with the checkpoint older than
    the bound less the wait (the invalidator dead or behind), a replica's read could be past
    the bound, so the primary reads, although the replica has applied the state."""
    rig.drop(rig.rs.gtid_binlog_pos())
    rig.rs.wait_all_caught_up()
    redis_cache = rig.cache.redis
    budget = rig.cache._replica_budget_ms
    assert budget is not None
    seconds, micros = redis_cache.time()
    old = seconds * 1000 + micros // 1000 - int(budget) - 1000
    redis_cache.client.set(redis_cache.keys.checkpoint, old)  # as a dead invalidator leaves it
    redis_cache.drop(PAGE)
    before = _fills("primary"), _fills("replica")
    assert rig.served_name()
    assert (_fills("primary"), _fills("replica")) == (before[0] + 1, before[1])


def test_a_half_read_transaction_sends_the_fill_to_the_primary(rig: Rig) -> None:
    """A chunk of a transaction records '-': the replica is not asked at all."""
    rig.rs.stop_applying(rig.replica)
    rig.rename("Large Transaction")
    rig.drop("-")
    primary_fills = _fills("primary")
    assert rig.served_name() == "Large Transaction"
    assert _fills("primary") == primary_fills + 1
