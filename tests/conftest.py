"""Fixtures shared by the suite: a private database and Redis namespace per test run, the app.

Integration tests use the machine's MariaDB (127.0.0.1:3306) and Redis (127.0.0.1:6379) without
ever flushing, stopping or reconfiguring them: each run gets its own database and key prefix, and
removes both at the end. Tests that need a binlog or must break a server use the throwaway servers
of ``tests.support``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from service import close_app, create_app
from service.config import Settings
from service.orders import repository, schema
from service.orders import seed as generator
from service.orders.database import connect

pytest_plugins = ["tests.support.fixtures"]

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


@pytest.fixture(scope="session")
def seeded_database_url() -> Iterator[str]:
    """One database per test run on the shared MariaDB, with 1000 orders (100 pages)."""
    url = make_database(SHARED_MYSQL, SEEDED_ORDERS)
    yield url
    drop_database(url)


@pytest.fixture
def cache_prefix() -> Iterator[str]:
    """A Redis namespace private to one test, deleted afterwards."""
    prefix = unique_name("cache")
    yield prefix
    delete_namespace(SHARED_REDIS, prefix)


@pytest.fixture
def settings(seeded_database_url: str, cache_prefix: str) -> Settings:
    return Settings.from_env(
        {
            "ORDERS_DATABASE_URL": seeded_database_url,
            "ORDERS_REDIS_URL": SHARED_REDIS,
            "ORDERS_CACHE_PREFIX": cache_prefix,
            "ORDERS_LOG_FORMAT": "json",
        }
    )


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    application = create_app(settings)
    application.testing = True
    yield application
    close_app(application)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def shared_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(SHARED_REDIS)
    yield client
    client.close()
