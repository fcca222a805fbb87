"""The lag bound with a real Redis and MariaDB, through the app (Flask test client, one process):
read times stamped in Redis' clock, the published settings, /readyz's invalidation report, and a
write with no invalidator at all becoming visible within ORDERS_CACHE_MAX_LAG."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from service import close_app, create_app
from service.cache.entries import PageEntry
from service.cache.keys import CacheKeys
from service.config import Settings
from service.orders.database import connect as open_connection
from service.wiring import api_services
from tests.support.consistency import assert_consistent
from tests.support.shared import SHARED_MYSQL, SHARED_REDIS, drop_database, make_database
from tests.support.waiting import wait_for

MAX_LAG = 0.5


@pytest.fixture(scope="module")
def own_database_url() -> Iterator[str]:
    url = make_database(SHARED_MYSQL, 30)
    yield url
    drop_database(url)


@pytest.fixture
def lag_settings(own_database_url: str, cache_prefix: str) -> Settings:
    return Settings.from_env(
        {
            "ORDERS_DATABASE_URL": own_database_url,
            "ORDERS_REDIS_URL": SHARED_REDIS,
            "ORDERS_CACHE_PREFIX": cache_prefix,
            "ORDERS_CACHE_MAX_LAG": str(MAX_LAG),
            "ORDERS_LOG_FORMAT": "json",
        }
    )


@pytest.fixture
def lag_app(lag_settings: Settings) -> Iterator[Flask]:
    app = create_app(lag_settings)
    yield app
    close_app(app)


def keys_of(app: Flask) -> CacheKeys:
    return api_services(app).redis.keys


def redis_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds * 1000 + micros // 1000)


def test_a_fill_is_stamped_with_redis_time_taken_before_the_query(
    lag_app: Flask, shared_redis: redis.Redis
) -> None:
    before = redis_ms(shared_redis)
    assert lag_app.test_client().get("/orders/2").headers["X-Cache"] == "MISS"
    after = redis_ms(shared_redis)
    entry = PageEntry.decode(shared_redis.get(keys_of(lag_app).page(2)) or b"")
    assert before <= entry.read_ms <= after


def test_the_api_publishes_the_settings_the_invalidator_must_share(
    lag_app: Flask, lag_settings: Settings, shared_redis: redis.Redis
) -> None:
    settings = lag_settings
    key = keys_of(lag_app).config
    wait_for(lambda: shared_redis.hgetall(key).get(b"page_size") == b"10", 15, "the config")
    config = {k.decode(): v.decode() for k, v in shared_redis.hgetall(key).items()}
    assert config == {
        "prefix": settings.cache_prefix,
        "page_size": "10",
        "ttl": str(settings.cache_ttl),
        "max_stale": str(settings.cache_max_stale),
        "max_lag": str(MAX_LAG),
    }


def test_readyz_says_absent_then_ok_then_behind_and_stays_200(
    lag_app: Flask, shared_redis: redis.Redis
) -> None:
    client = lag_app.test_client()

    def invalidation() -> str:
        response = client.get("/readyz")
        assert response.status_code == 200
        return str(response.get_json()["invalidation"]["status"])

    assert invalidation() == "absent"

    def live_invalidator_says_ok() -> bool:
        # Moved on every poll, as a live invalidator moves it: on a slow machine a checkpoint set
        # once can be past MAX_LAG before the listener's next poll sees it ("behind", never "ok").
        shared_redis.set(keys_of(lag_app).checkpoint, redis_ms(shared_redis))
        return invalidation() == "ok"

    wait_for(live_invalidator_says_ok, 15, "readyz to say ok")  # the listener's poll
    # Nothing moves it any more (the invalidator stopped): behind once MAX_LAG has passed.
    wait_for(lambda: invalidation() == "behind", 15, "readyz to say behind")


def test_with_no_invalidator_a_write_shows_within_the_bound_and_every_page_agrees(
    lag_app: Flask, lag_settings: Settings, own_database_url: str
) -> None:
    client: FlaskClient = lag_app.test_client()
    for page in (1, 2, 3):
        client.get(f"/orders/{page}")
    assert client.get("/orders/2").headers["X-Cache"] == "HIT"
    first = client.get("/orders/2").get_json()["orders"][0]["id"]
    # a writer of its own: the API's pool opens read-only sessions
    with open_connection(lag_settings.database_url) as writer, writer.cursor() as cur:
        cur.execute("UPDATE orders SET customer_name = 'no invalidator' WHERE id = %s", (first,))
    committed = time.monotonic()

    def shown() -> str:
        return str(client.get("/orders/2").get_json()["orders"][0]["customer"]["name"])

    wait_for(lambda: shown() == "no invalidator", 10, "the write to show")
    assert time.monotonic() - committed < 10  # the TTL is an hour: only the bound refilled it

    def fetch(number: int) -> tuple[int, dict[str, Any] | None]:
        response = client.get(f"/orders/{number}")
        return response.status_code, response.get_json() if response.status_code == 200 else None

    url = lag_settings.database_url

    def connect() -> Any:
        import pymysql

        return pymysql.connect(
            host=url.host,
            port=url.port,
            user=url.user,
            password=url.password,
            database=url.database,
        )

    assert_consistent(fetch, connect, lag_settings.page_size, settle=MAX_LAG + 5)
