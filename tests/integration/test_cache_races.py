"""The cache under concurrency: no stale set, one MySQL query per cold page, Redis optional."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask

from service import close_app, create_app
from service.cache.aside import PageCache
from service.cache.keys import Invalidation
from service.config import RedisURL, Settings
from service.orders.database import connect
from service.wiring import api_services
from tests.support.servers import free_port

pytestmark = pytest.mark.integration


def page_cache(app: Flask) -> PageCache:
    cache: PageCache = api_services(app).pages
    return cache


@pytest.fixture
def order_5_restored(settings: Settings) -> Iterator[Callable[[str], None]]:
    """Lets a test change order 5's status; puts the original back afterwards."""
    connection = connect(settings.database_url)
    with connection.cursor() as cursor:
        cursor.execute("SELECT status FROM orders WHERE id = 5")
        (original,) = cursor.fetchone()

    def set_status(status: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute("UPDATE orders SET status = %s WHERE id = 5", (status,))

    yield set_status
    set_status(original)
    connection.close()


def test_a_page_read_before_a_write_is_never_stored_after_the_invalidation(
    app: Flask, order_5_restored: Callable[[str], None]
) -> None:
    """The stale-set race, forced: the reader has read MySQL, then the write commits and is
    invalidated, then the reader tries to store what it read. The lease makes the store fail."""
    cache = page_cache(app)
    read_done, invalidated = threading.Event(), threading.Event()
    real_load = cache._load_page

    def slow_reader(page: int, state: str = "") -> bytes:
        body = real_load(page, state)  # the old row: the write has not committed yet
        read_done.set()
        assert invalidated.wait(10)
        return body

    cache._load_page = slow_reader
    client = app.test_client()
    with ThreadPoolExecutor(1) as pool:
        reader = pool.submit(client.get, "/orders/1")
        assert read_done.wait(10)
        order_5_restored("refunded")  # the writer commits...
        # ...and the invalidator drops page 1 and its lease
        cache.redis.invalidate(Invalidation(pages=frozenset({1})))
        invalidated.set()
        stale = reader.result(10)
    cache._load_page = real_load

    assert stale.headers["X-Cache"] == "MISS"  # the reader answered with what it read
    after = client.get("/orders/1")
    assert after.headers["X-Cache"] == "MISS"  # but did not store it
    assert after.get_json()["orders"][4]["status"] == "refunded"
    assert client.get("/orders/1").headers["X-Cache"] == "HIT"


def test_two_hundred_concurrent_requests_for_a_cold_page_cause_one_mysql_query(
    settings: Settings,
) -> None:
    """Single flight: one request holds the lease and queries MySQL, the others wait for its
    fill. In-process, 40 threads share one GIL, so Redis gets a generous timeout here; the
    shipped 100 ms is exercised against real servers in tests/faults."""
    # The lag bound is not under test: on a loaded machine 200 requests on 40 threads can take
    # longer than its 2 s, and a waiter would then refill an entry it judged too old.
    app = create_app(
        dataclasses.replace(settings, cache_timeout=2.0, cache_lock_wait=5.0, cache_max_lag=3600.0)
    )
    cache = page_cache(app)
    calls: list[int] = []
    real_load = cache._load_page
    gate = threading.Event()

    def counted(page: int, state: str = "") -> bytes:
        calls.append(page)
        gate.wait(0.2)  # hold the lease long enough for every request to arrive
        return real_load(page, state)

    cache._load_page = counted
    client = app.test_client()
    with ThreadPoolExecutor(40) as pool:
        responses = list(pool.map(lambda _: client.get("/orders/77"), range(200)))
    cache._load_page = real_load
    close_app(app)

    assert {r.status_code for r in responses} == {200}
    assert len({r.data for r in responses}) == 1
    assert calls == [77], Counter(r.headers["X-Cache"] for r in responses)
    assert sum(r.headers["X-Cache"] == "MISS" for r in responses) == 1


def test_with_redis_unreachable_pages_come_from_mysql_and_readiness_is_degraded(
    settings: Settings,
) -> None:
    nobody_listens = RedisURL(f"redis://127.0.0.1:{free_port()}/0", password="")
    unreachable = dataclasses.replace(settings, redis_url=nobody_listens)
    app = create_app(unreachable)
    try:
        client = app.test_client()
        outcomes = [client.get("/orders/3") for _ in range(5)]
        assert {r.status_code for r in outcomes} == {200}
        assert {r.headers["X-Cache"] for r in outcomes} == {"BYPASS"}
        assert [o["id"] for o in outcomes[-1].get_json()["orders"]] == list(range(21, 31))
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.get_json()["status"] == "degraded"
    finally:
        close_app(app)
