"""Readiness that serves: during a MySQL outage the pod stays ready and keeps serving its cache.

Before the fix /readyz answered 503 whenever MySQL did not: Kubernetes then removed every pod from
the Service at once and the cached pages (the reason for the cache) were unreachable.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from service import close_app, create_app
from service.config import Settings
from tests.faults.conftest import Stack, wait_until
from tests.support.fixtures import ThrowawayServers

pytestmark = [pytest.mark.faults]


def readyz(stack: Stack) -> requests.Response:
    return requests.get(stack.base_url + "/readyz", timeout=5)


def test_mysql_stopped_readiness_stays_200_and_cached_pages_are_served(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory(orders=300, invalidator=False)
    assert stack.get(1).headers["X-Cache"] in {"MISS", "HIT"}
    wait_until(lambda: stack.get(1).headers["X-Cache"] == "HIT", 20, "page 1 cached")
    ok = readyz(stack)
    assert ok.status_code == 200
    body = ok.json()
    assert (body["status"], body["checks"]) == (
        "ok",
        {"mysql": "ok", "schema": "ok", "redis": "ok"},
    )
    assert "degraded" not in body

    stack.mariadb.stop()
    degraded = readyz(stack)
    assert degraded.status_code == 200, degraded.text
    body = degraded.json()
    assert body["status"] == "degraded"
    assert body["checks"]["mysql"].startswith("unavailable")
    assert body["checks"]["redis"] == "ok"
    assert any("mysql down" in line for line in body["degraded"])
    cached = stack.get(1)
    assert cached.status_code == 200
    assert cached.headers["X-Cache"] in {"HIT", "STALE"}
    uncached = stack.get(25)
    assert uncached.status_code == 503
    assert uncached.headers["Content-Type"].startswith("application/problem+json")

    # Nothing left to serve from: now, and only now, the pod leaves the endpoints.
    stack.redis_server.stop()
    gone = readyz(stack)
    assert gone.status_code == 503
    assert gone.json()["status"] == "unavailable"


def test_a_database_without_the_schema_is_named_in_the_readiness_body(
    throwaway: ThrowawayServers, settings_env: dict[str, str]
) -> None:
    mariadb = throwaway.mariadb(binlog=False)
    redis_server = throwaway.redis()
    empty = mariadb.create_database("never_migrated")
    settings = Settings.from_env(
        {**settings_env, "ORDERS_DATABASE_URL": empty.url, "ORDERS_REDIS_URL": redis_server.url}
    )
    app = create_app(settings)
    try:
        response = app.test_client().get("/readyz")
    finally:
        close_app(app)
    assert response.status_code == 200  # Redis answers: cached pages could be served
    body = response.get_json()
    assert body["checks"]["mysql"].startswith("schema missing: no table orders, order_buckets")
    assert "orders-service migrate" in body["checks"]["mysql"]
    assert any("schema missing" in line for line in body["degraded"])


@pytest.fixture
def settings_env() -> dict[str, str]:
    return {"ORDERS_CACHE_PREFIX": "readiness", "ORDERS_LOG_LEVEL": "warning"}
