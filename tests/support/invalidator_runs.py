"""An invalidator in a thread beside a Flask test client, over a seeded database: what the
invalidation and schema-drift tests share (settings for a private namespace, seeding, warming
pages, and "does the API agree with MySQL")."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from flask import Flask
from flask.testing import FlaskClient

from service import close_app, create_app
from service.cache.keys import CacheKeys
from service.config import Settings
from service.invalidation.invalidator import Invalidator
from service.orders import repository, schema
from service.orders import seed as generator
from service.orders.database import connect
from service.wiring import build_invalidator
from tests.support.servers import Database
from tests.support.shared import SHARED_REDIS
from tests.support.waiting import wait_for

ORDERS = 200  # 20 pages of 10


def settings_for(
    database: Database, prefix: str, redis_url: str = SHARED_REDIS, **env: str
) -> Settings:
    return Settings.from_env(
        {
            "ORDERS_DATABASE_URL": database.url,
            "ORDERS_REDIS_URL": redis_url,
            "ORDERS_CACHE_PREFIX": prefix,
            "ORDERS_LOG_FORMAT": "json",
            "ORDERS_INVALIDATOR_LEASE_TTL": "1",
            **env,
        }
    )


def seed(settings: Settings, orders: int = ORDERS) -> None:
    with connect(settings.database_url, autocommit=False) as connection:
        schema.migrate(connection)
        with connection.cursor() as cursor:
            repository.insert_orders(cursor, list(generator.generate(orders, seed=3)))
        connection.commit()


class Running:
    """An invalidator in a thread; ``stop()`` ends it and re-raises what ended it early."""

    def __init__(self, settings: Settings, *, wait_active: bool = True) -> None:
        self.invalidator: Invalidator = build_invalidator(settings)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        keys = self.invalidator.cache.keys
        if not wait_active:
            return
        wait_for(
            lambda: (
                self.error is not None
                or (self.invalidator.active.is_set() and bool(self._stored(keys)))
            ),
            30,
        )
        if self.error is not None:
            raise self.error

    def _stored(self, keys: CacheKeys) -> bytes | None:
        return self.invalidator.cache.client.get(keys.binlog_position)  # type: ignore[return-value]

    def _run(self) -> None:
        try:
            self.invalidator.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            self.error = exc

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        self.invalidator.stop()
        self.thread.join(15)
        assert not self.thread.is_alive(), "the invalidator did not stop"


@contextlib.contextmanager
def following(settings: Settings) -> Iterator[Running]:
    running = Running(settings)
    try:
        yield running
    finally:
        running.stop()


@contextlib.contextmanager
def api(settings: Settings) -> Iterator[FlaskClient]:
    app: Flask = create_app(settings)
    try:
        yield app.test_client()
    finally:
        close_app(app)


def warm(client: FlaskClient, pages: range) -> None:
    for page in pages:
        client.get(f"/orders/{page}")


def api_agrees_with_mysql(client: FlaskClient, database: Database) -> bool:
    """Every page and the totals the API serves equal MySQL's (one snapshot of ids and status)."""
    with contextlib.closing(database.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, status FROM orders ORDER BY id")
        rows = [(int(i), str(s)) for i, s in cur.fetchall()]
    pages = max(1, -(-len(rows) // 10))
    for page in range(1, pages + 1):
        body = client.get(f"/orders/{page}").get_json()
        if body is None or body.get("total_orders") != len(rows):
            return False
        if [(o["id"], o["status"]) for o in body["orders"]] != rows[(page - 1) * 10 : page * 10]:
            return False
    return True
