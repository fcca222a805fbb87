"""The consistency inspector against real MariaDB and Redis: a wrong page planted in Redis is a
confirmed inconsistency; a write in flight that is invalidated within the bound is not.

The invalidator's heartbeat is played by the test (it advances ``{base}checkpoint`` to Redis'
TIME, as the INVALIDATE script does), so the planted page is one the API would serve as a hit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from flask.testing import FlaskClient

from service import close_app, create_app
from service.cache.entries import PageEntry
from service.cache.keys import CacheKeys
from service.config import Settings
from service.inspection.inspector import Inspector
from service.orders import loaders
from service.orders.database import Database, connect
from service.wiring import build_database, build_redis_cache
from tests.support.inspection import Heartbeat, counted
from tests.support.servers import free_port
from tests.support.shared import SHARED_MYSQL, SHARED_REDIS, drop_database, make_database
from tests.support.waiting import wait_for

MAX_LAG = 0.5
ORDERS = 50  # 5 pages: every round samples all of them


@pytest.fixture(scope="module")
def small_database_url() -> Iterator[str]:
    """A database of our own: these tests write to it."""
    url = make_database(SHARED_MYSQL, ORDERS)
    yield url
    drop_database(url)


@pytest.fixture
def inspected(small_database_url: str, cache_prefix: str) -> Iterator[tuple[Settings, FlaskClient]]:
    settings = Settings.from_env(
        {
            "ORDERS_DATABASE_URL": small_database_url,
            "ORDERS_REDIS_URL": SHARED_REDIS,
            "ORDERS_CACHE_PREFIX": cache_prefix,
            "ORDERS_CACHE_MAX_LAG": str(MAX_LAG),
            "ORDERS_INSPECTOR_PAGES": "10",
            "ORDERS_LOG_FORMAT": "json",
        }
    )
    app = create_app(settings)
    yield settings, app.test_client()
    close_app(app)


def make_inspector(settings: Settings) -> tuple[Inspector, Database]:
    database = build_database(settings)
    inspector = Inspector(
        build_redis_cache(settings),
        load_page=loaders.page_loader(database, settings.page_size),
        load_total=loaders.total_loader(database),
        pages=settings.inspector_pages,
        max_lag=settings.cache_max_lag,
        max_queries=settings.inspector_max_queries,
        interval=settings.inspector_interval,
        load_pages=loaders.pages_loader(database, settings.page_size),
    )
    return inspector, database


def wait_past_the_bound(inspector: Inspector) -> None:
    """Until every suspect is due (Redis' clock); the next round then judges them."""
    due = max(s.due_ms for s in inspector.suspects.values())

    def past() -> bool:
        seconds, micros = inspector.cache.client.time()
        return seconds * 1000 + micros // 1000 > due

    wait_for(past, 15, "the suspects to be due")


def test_a_wrong_page_planted_in_redis_is_a_confirmed_inconsistency(
    inspected: tuple[Settings, FlaskClient], shared_redis: redis.Redis
) -> None:
    settings, client = inspected
    keys = CacheKeys(settings.cache_prefix, settings.page_size)
    for page in range(1, 6):
        assert client.get(f"/orders/{page}").status_code == 200
    inspector, database = make_inspector(settings)
    before = counted("inconsistencies", "page"), counted("checks", "page")
    try:
        with Heartbeat(shared_redis, keys.checkpoint):
            time.sleep(0.2)
            planted = PageEntry.build(b'[{"id":-1}]', int(time.time() * 1000) + 600_000)
            shared_redis.set(keys.page(3), planted.encode())
            inspector.round()
            assert set(inspector.suspects) == {3}
            wait_past_the_bound(inspector)
            inspector.round()
    finally:
        database.close()
    assert counted("inconsistencies", "page") == before[0] + 1
    assert counted("checks", "page") >= before[1] + 5


def test_a_write_in_flight_that_is_invalidated_within_the_bound_is_not_counted(
    inspected: tuple[Settings, FlaskClient], shared_redis: redis.Redis
) -> None:
    settings, client = inspected
    keys = CacheKeys(settings.cache_prefix, settings.page_size)
    for page in range(1, 6):
        client.get(f"/orders/{page}")
    inspector, database = make_inspector(settings)
    before = counted("inconsistencies", "page"), counted("mismatches", "page")
    first_id = client.get("/orders/2").get_json()["orders"][0]["id"]
    try:
        with Heartbeat(shared_redis, keys.checkpoint):
            time.sleep(0.2)
            # a writer of its own: the API's pool opens read-only sessions
            with connect(settings.database_url) as writer, writer.cursor() as cur:
                cur.execute(
                    "UPDATE orders SET customer_name = 'in flight' WHERE id = %s", (first_id,)
                )
            inspector.round()  # sees the old page 2 in Redis: a mismatch, not yet a verdict
            assert 2 in inspector.suspects
            shared_redis.delete(keys.page(2))  # the invalidator applies the write in time
            wait_past_the_bound(inspector)
            inspector.round()
    finally:
        database.close()
    assert counted("mismatches", "page") >= before[1] + 1
    assert counted("inconsistencies", "page") == before[0]


def test_orders_service_inspect_serves_its_metrics_and_stops_on_sigterm(
    inspected: tuple[Settings, FlaskClient], small_database_url: str, cache_prefix: str
) -> None:
    _settings, client = inspected
    client.get("/orders/1")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ORDERS_")},
        "ORDERS_DATABASE_URL": small_database_url,
        "ORDERS_REDIS_URL": SHARED_REDIS,
        "ORDERS_CACHE_PREFIX": cache_prefix,
        "ORDERS_INSPECTOR_METRICS_PORT": str(port),
        "ORDERS_INSPECTOR_INTERVAL": "0.2",
        "ORDERS_HOST": "127.0.0.1",
        "ORDERS_LOG_FORMAT": "json",
    }
    cli = Path(sys.executable).parent / "orders-service"
    process = subprocess.Popen(
        [str(cli), "inspect"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:

        def serving() -> bool:
            assert process.poll() is None, "orders-service inspect exited"
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            return (
                'orders_inspector_inconsistencies_total{component="inspector",kind="page"}' in text
            )

        wait_for(serving, 60, "the inspector's /metrics")
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output


class Rounds:
    """The inspector's loop in a thread (as ``orders-service inspect`` runs it)."""

    def __init__(self, inspector: Inspector, interval: float) -> None:
        self._inspector, self._interval = inspector, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Rounds:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        self._inspector.run(self._stop, self._interval)


def plant(shared_redis: redis.Redis, keys: CacheKeys, page: int) -> None:
    """A wrong page in the service's own entry format, fresh for ten minutes."""
    wrong = PageEntry.build(b'[{"id":-1}]', int(time.time() * 1000) + 600_000)
    shared_redis.set(keys.page(page), wrong.encode())


@pytest.mark.parametrize("indexed", [True, False], ids=["in the index", "missing from the index"])
def test_a_wrong_page_is_confirmed_and_repaired_within_seconds(
    indexed: bool, inspected: tuple[Settings, FlaskClient], shared_redis: redis.Redis
) -> None:
    """Issue 18 case 7: confirmed once the bound has passed (a write in flight may take that
    long), then invalidated (entry deleted, near caches told) and counted; a page missing from
    the index is found by the tour of page numbers."""
    settings, client = inspected
    keys = CacheKeys(settings.cache_prefix, settings.page_size)
    for page in range(1, 6):
        client.get(f"/orders/{page}")
    inspector, database = make_inspector(settings)
    before = counted("inconsistencies", "page"), counted("repairs", "page")
    try:
        with Heartbeat(shared_redis, keys.checkpoint), Rounds(inspector, 0.1):
            plant(shared_redis, keys, 4)
            if not indexed:
                shared_redis.zrem(keys.index, 4)
            planted = time.monotonic()
            confirmed = wait_for(
                lambda: counted("inconsistencies", "page") > before[0], 15, "the confirmation"
            )
            wait_for(lambda: not shared_redis.exists(keys.page(4)), 5, "the repair")
            repaired = time.monotonic() - planted
    finally:
        database.close()
    assert counted("repairs", "page") == before[1] + 1
    assert confirmed < MAX_LAG + 5
    assert repaired < MAX_LAG + 5
    assert client.get("/orders/4").get_json()["orders"][0]["id"] != -1


def test_readyz_says_when_inconsistencies_were_found_in_the_last_minutes(
    inspected: tuple[Settings, FlaskClient], shared_redis: redis.Redis
) -> None:
    settings, client = inspected
    keys = CacheKeys(settings.cache_prefix, settings.page_size)
    client.get("/orders/2")
    assert client.get("/readyz").get_json()["inspection"]["status"] == "ok"
    inspector, database = make_inspector(settings)
    try:
        with Heartbeat(shared_redis, keys.checkpoint), Rounds(inspector, 0.1):
            plant(shared_redis, keys, 2)
            wait_for(lambda: not shared_redis.exists(keys.page(2)), 15, "the repair")
    finally:
        database.close()
    body = client.get("/readyz").get_json()
    assert body["status"] == "degraded"
    assert body["inspection"]["status"] == "inconsistent"
    assert body["inspection"]["found_seconds_ago"] < 60


def test_the_inspectors_mysql_queries_stay_within_its_budget(
    inspected: tuple[Settings, FlaskClient], shared_redis: redis.Redis
) -> None:
    settings, client = inspected
    keys = CacheKeys(settings.cache_prefix, settings.page_size)
    for page in range(1, 6):
        client.get(f"/orders/{page}")
    database = build_database(settings)
    loads: list[float] = []
    load_page = loaders.page_loader(database, settings.page_size)
    load_total = loaders.total_loader(database)

    def counting_page(page: int) -> bytes:
        loads.append(time.monotonic())
        return load_page(page)

    def counting_total() -> int:
        loads.append(time.monotonic())
        return load_total()

    inspector = Inspector(
        build_redis_cache(settings),
        load_page=counting_page,
        load_total=counting_total,
        pages=50,
        max_lag=settings.cache_max_lag,
        max_queries=4,
        interval=0.1,
    )
    try:
        with Heartbeat(shared_redis, keys.checkpoint), Rounds(inspector, 0.1):
            began = time.monotonic()
            time.sleep(3.0)  # the budget is what is measured: a span of rounds, not an event
            elapsed = time.monotonic() - began
    finally:
        database.close()
    assert loads, "the inspector checked nothing"
    assert len(loads) <= 4 * elapsed + 2


def test_a_block_of_pages_read_at_once_is_byte_for_byte_the_pages_read_one_by_one(
    inspected: tuple[Settings, FlaskClient],
) -> None:
    """The tour compares a block of pages per MySQL read: each must be what a fill stores."""
    settings, _client = inspected
    database = build_database(settings)
    try:
        one = loaders.page_loader(database, settings.page_size)
        block = loaders.pages_loader(database, settings.page_size)
        assert block(2, 6) == [one(page) for page in range(2, 8)]  # the last two past the end
    finally:
        database.close()
