"""The machine's shared MariaDB and Redis as the suite uses them: a private database and Redis
namespace per run or per test, removed afterwards, never a flush, stop or reconfiguration.

Nothing here imports pytest: the root conftest's fixtures, any test tier and the bench use these.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pymysql
import redis

from service.config import Settings
from service.orders import repository, schema
from service.orders import seed as generator
from service.orders.database import connect

__all__ = [
    "SEEDED_ORDERS",
    "SHARED_MYSQL",
    "SHARED_REDIS",
    "delete_namespace",
    "drop_database",
    "make_database",
    "unique_name",
]

SHARED_MYSQL = os.environ.get("ORDERS_TEST_MYSQL", "mysql://root@127.0.0.1:3306")
SHARED_REDIS = os.environ.get("ORDERS_TEST_REDIS", "redis://127.0.0.1:6379/0")
SEEDED_ORDERS = 1000


def unique_name(kind: str) -> str:
    return f"orders_test_{kind}_{uuid.uuid4().hex[:10]}"


def delete_namespace(redis_url: str, prefix: str) -> None:
    """Remove one test namespace's keys: SCAN + UNLINK of our prefix only, never a flush."""
    client = redis.Redis.from_url(redis_url)
    try:
        for batch in _batched(client.scan_iter(match=f"{prefix}:*", count=1000), 500):
            client.unlink(*batch)
    finally:
        client.close()


def _batched(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def make_database(base_url: str, orders: int) -> str:
    """A fresh database on ``base_url`` with the schema and ``orders`` seeded orders."""
    name = unique_name("db")
    settings = Settings.from_env({"ORDERS_DATABASE_URL": f"{base_url}/{name}"})
    url = settings.database_url
    server = pymysql.connect(host=url.host, port=url.port, user=url.user, password=url.password)
    with server, server.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}`")
    with connect(url, autocommit=False) as connection:
        schema.migrate(connection)
        with connection.cursor() as cursor:
            rows = list(generator.generate(orders, seed=7))
            for start in range(0, len(rows), 5000):
                repository.insert_orders(cursor, rows[start : start + 5000])
        connection.commit()
    return f"{base_url}/{name}"


def drop_database(database_url: str) -> None:
    url = Settings.from_env({"ORDERS_DATABASE_URL": database_url}).database_url
    server = pymysql.connect(host=url.host, port=url.port, user=url.user, password=url.password)
    with server, server.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{url.database}`")
