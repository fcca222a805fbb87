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
from prometheus_client import REGISTRY

from service import close_app, create_app
from service.cache.entries import PageEntry
from service.cache.keys import CacheKeys
from service.config import Settings
from service.inspection.inspector import Inspector
from service.orders import loaders
from service.orders.database import Database
from service.services import build_database, build_redis_cache
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


class Heartbeat:
    """Plays a healthy invalidator: ``checkpoint`` = Redis now, every 50 ms."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self._client, self._key = client, key
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            seconds, micros = self._client.time()
            self._client.set(self._key, seconds * 1000 + micros // 1000)
            self._stop.wait(0.05)


def counted(name: str, kind: str) -> float:
    return REGISTRY.get_sample_value(f"orders_inspector_{name}_total", {"kind": kind}) or 0.0


def make_inspector(settings: Settings) -> tuple[Inspector, Database]:
    database = build_database(settings)
    inspector = Inspector(
        build_redis_cache(settings),
        load_page=loaders.page_loader(database, settings.page_size),
        load_total=loaders.total_loader(database),
        pages=settings.inspector_pages,
        max_lag=settings.cache_max_lag,
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
            database.run(
                "test",
                lambda cur: cur.execute(
                    "UPDATE orders SET customer_name = 'in flight' WHERE id = %s", (first_id,)
                ),
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
