"""Invalidation from the binlog, precise to the page: a change made by any client reaches the API,
and only the pages it made wrong are evicted. The invalidator runs in a thread against a
throwaway MariaDB with the binlog on; the app reads the same database and a private namespace
of the shared Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service import close_app, create_app
from service.config import Settings
from service.invalidation.invalidator import Invalidator
from service.orders import repository, schema
from service.orders import seed as generator
from service.orders.database import connect
from service.wiring import build_invalidator
from tests.support.servers import Database
from tests.support.shared import SHARED_REDIS
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

ORDERS = 200  # 20 pages


@pytest.fixture
def binlog_settings(binlog_database: Database, cache_prefix: str) -> Settings:
    settings = Settings.from_env(
        {
            "ORDERS_DATABASE_URL": binlog_database.url,
            "ORDERS_REDIS_URL": SHARED_REDIS,
            "ORDERS_CACHE_PREFIX": cache_prefix,
            "ORDERS_LOG_FORMAT": "json",
        }
    )
    with connect(settings.database_url, autocommit=False) as connection:
        schema.migrate(connection)
        with connection.cursor() as cursor:
            repository.insert_orders(cursor, list(generator.generate(ORDERS, seed=3)))
        connection.commit()
    return settings


@pytest.fixture
def invalidator(binlog_settings: Settings) -> Iterator[Invalidator]:
    running = build_invalidator(binlog_settings)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while running.cache.stored_position() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    yield running
    running.stop()
    thread.join(10)


@pytest.fixture
def live_app(binlog_settings: Settings, invalidator: Invalidator) -> Iterator[Flask]:
    app = create_app(binlog_settings)
    yield app
    close_app(app)


@pytest.fixture
def sql(binlog_database: Database) -> Iterator[Callable[[str], None]]:
    connection = binlog_database.connect(autocommit=True)

    def run(statement: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(statement)

    yield run
    connection.close()


def warm(client: FlaskClient, pages: range) -> None:
    for page in pages:
        client.get(f"/orders/{page}")
    assert all(client.get(f"/orders/{p}").headers["X-Cache"] == "HIT" for p in pages)


def test_an_update_by_another_client_evicts_only_its_page(
    live_app: Flask, sql: Callable[[str], None]
) -> None:
    client = live_app.test_client()
    warm(client, range(1, 21))
    sql("UPDATE orders SET status = 'refunded' WHERE id = 57")
    wait_for(lambda: client.get("/orders/6").get_json()["orders"][6]["status"] == "refunded")
    outcomes = {p: client.get(f"/orders/{p}").headers["X-Cache"] for p in range(1, 21)}
    assert outcomes == dict.fromkeys(range(1, 21), "HIT")  # page 6 refilled once, nothing else


def test_an_insert_at_the_tail_keeps_the_earlier_pages_cached(
    live_app: Flask, sql: Callable[[str], None]
) -> None:
    client = live_app.test_client()
    warm(client, range(1, 21))
    sql(
        "INSERT INTO orders (customer_id, customer_name, customer_email, status, amount, "
        "currency, item_count) VALUES (1, 'New Customer', 'new@example.com', 'paid', 9.99, "
        "'EUR', 1)"
    )
    wait_for(lambda: client.get("/orders/1").get_json()["total_orders"] == ORDERS + 1)
    newest = client.get("/orders/21").get_json()
    assert [order["total"]["amount"] for order in newest["orders"]] == ["9.99"]
    assert newest["links"]["last"] == "/orders/21"
    assert all(client.get(f"/orders/{p}").headers["X-Cache"] == "HIT" for p in range(1, 21))


def test_a_delete_shifts_its_page_and_the_later_ones(
    live_app: Flask, sql: Callable[[str], None]
) -> None:
    client = live_app.test_client()
    warm(client, range(1, 21))
    sql("DELETE FROM orders WHERE id = 95")
    wait_for(lambda: client.get("/orders/20").get_json()["total_orders"] == ORDERS - 1)
    assert [o["id"] for o in client.get("/orders/10").get_json()["orders"]] == [
        91,
        92,
        93,
        94,
        96,
        97,
        98,
        99,
        100,
        101,
    ]
    assert client.get("/orders/20").get_json()["orders"][-1]["id"] == 200
    assert all(client.get(f"/orders/{p}").headers["X-Cache"] == "HIT" for p in range(1, 10))


def test_a_rolled_back_transaction_invalidates_nothing(
    live_app: Flask,
    binlog_database: Database,
    invalidator: Invalidator,
    sql: Callable[[str], None],
) -> None:
    client = live_app.test_client()
    warm(client, range(1, 3))
    connection = binlog_database.connect(autocommit=False)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE orders SET status = 'cancelled' WHERE id = 3")
    connection.rollback()
    connection.close()
    sql("UPDATE orders SET item_count = 99 WHERE id = 150")  # a marker after the rollback
    wait_for(lambda: client.get("/orders/15").get_json()["orders"][9]["item_count"] == 99)
    assert client.get("/orders/1").headers["X-Cache"] == "HIT"
    assert client.get("/orders/1").get_json()["orders"][2]["status"] != "cancelled"


def test_truncate_invalidates_everything(live_app: Flask, sql: Callable[[str], None]) -> None:
    client = live_app.test_client()
    warm(client, range(1, 4))
    sql("TRUNCATE TABLE orders")  # fires no triggers: the invalidator clears the counts
    wait_for(lambda: client.get("/orders/1").get_json()["orders"] == [])
    assert client.get("/orders/2").status_code == 404
