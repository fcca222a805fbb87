"""Fixtures shared by the suite: a private database and Redis namespace per test run, the app.

Integration tests use the machine's MariaDB (127.0.0.1:3306) and Redis (127.0.0.1:6379) without
ever flushing, stopping or reconfiguring them: each run gets its own database and key prefix, and
removes both at the end. Tests that need a binlog or must break a server use the throwaway servers
of ``tests.support``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from service import close_app, create_app
from service.config import Settings
from tests.support.shared import (
    SEEDED_ORDERS,
    SHARED_MYSQL,
    SHARED_REDIS,
    delete_namespace,
    drop_database,
    make_database,
    unique_name,
)

pytest_plugins = ["tests.support.fixtures", "tests.support.tiers"]


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
