"""The orders API end to end against the real MariaDB and Redis (1000 seeded orders, 100 pages)."""

from __future__ import annotations

import dataclasses
import time

import orjson
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from service import close_app, create_app
from service.cache.keys import CacheKeys
from service.config import Settings

pytestmark = pytest.mark.integration


def test_page_99_holds_orders_981_to_990_with_pagination(client: FlaskClient) -> None:
    response = client.get("/orders/99")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert [order["id"] for order in body["orders"]] == list(range(981, 991))
    assert body["page"] == 99
    assert body["per_page"] == 10
    assert body["total_orders"] == 1000
    assert body["total_pages"] == 100
    assert body["links"] == {
        "self": "/orders/99",
        "first": "/orders/1",
        "prev": "/orders/98",
        "next": "/orders/100",
        "last": "/orders/100",
    }


def test_an_order_has_exact_money_and_utc_timestamps(client: FlaskClient) -> None:
    order = client.get("/orders/1").get_json()["orders"][0]
    assert set(order) == {
        "id",
        "customer",
        "status",
        "total",
        "item_count",
        "created_at",
        "updated_at",
    }
    assert isinstance(order["total"]["amount"], str)
    assert order["total"]["amount"].count(".") == 1
    assert order["total"]["currency"] in {"EUR", "USD", "GBP"}
    assert order["created_at"].endswith("Z")


def test_a_miss_then_a_hit_serve_the_same_bytes(client: FlaskClient) -> None:
    first = client.get("/orders/42")
    second = client.get("/orders/42")
    assert first.headers["X-Cache"] == "MISS"
    assert second.headers["X-Cache"] == "HIT"
    assert first.data == second.data
    assert first.headers["ETag"] == second.headers["ETag"]


def test_the_last_page_is_served_and_the_one_after_is_404(client: FlaskClient) -> None:
    assert client.get("/orders/100").status_code == 200
    assert client.get("/orders/100").get_json()["links"]["next"] is None
    past = client.get("/orders/101")
    assert past.status_code == 404
    assert past.mimetype == "application/problem+json"
    assert "past the last page, 100" in past.get_json()["detail"]


def test_the_entry_expires_after_the_ttl(settings: Settings, shared_redis: redis.Redis) -> None:
    app = create_app(dataclasses.replace(settings, cache_ttl=1))
    try:
        client = app.test_client()
        assert client.get("/orders/7").headers["X-Cache"] == "MISS"
        assert client.get("/orders/7").headers["X-Cache"] == "HIT"
        key = CacheKeys(settings.cache_prefix, settings.page_size).page(7)
        assert 0 < shared_redis.ttl(key) <= 1 + settings.cache_max_stale
        time.sleep(1.1)
        assert client.get("/orders/7").headers["X-Cache"] == "MISS"
    finally:
        close_app(app)


def test_an_etag_revalidation_answers_304_without_a_body(client: FlaskClient) -> None:
    etag = client.get("/orders/3").headers["ETag"]
    revalidated = client.get("/orders/3", headers={"If-None-Match": etag})
    assert revalidated.status_code == 304
    assert revalidated.data == b""
    assert revalidated.headers["ETag"] == etag
    assert client.get("/orders/3", headers={"If-None-Match": 'W/"other"'}).status_code == 200


def test_cache_control_agrees_with_the_server_side_staleness(
    client: FlaskClient, settings: Settings
) -> None:
    header = client.get("/orders/1").headers["Cache-Control"]
    assert f"max-age={settings.http_max_age}" in header
    assert f"stale-if-error={settings.cache_max_stale}" in header
    assert "must-revalidate" not in header


@pytest.mark.parametrize(
    ("path", "status", "detail"),
    [
        ("/orders/0", 400, "numbered from 1"),
        ("/orders/-1", 400, "positive whole number"),
        ("/orders/abc", 400, "positive whole number"),
        ("/orders/1.5", 400, "positive whole number"),
        ("/orders/" + "1" + "0" * 30, 400, "at most"),
        ("/orders/", 400, "missing"),
        ("/orders", 400, "missing"),
        ("/orders/%00", 400, "positive whole number"),
        ("/orders/%C3%A9", 400, "positive whole number"),
        ("/orders/%ff", 400, "positive whole number"),
        ("/orders/1/2", 404, "no resource"),
        ("/nope", 404, "no resource"),
        ("/orders/101", 404, "past the last page"),
    ],
)
def test_bad_input_gets_a_problem_document(
    client: FlaskClient, path: str, status: int, detail: str
) -> None:
    response = client.get(path)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    problem = orjson.loads(response.data)
    assert problem["status"] == status
    assert detail in problem["detail"]
    assert {"type", "title", "status", "detail"} <= set(problem)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_a_wrong_method_is_405_with_allow(client: FlaskClient, method: str) -> None:
    response = client.open("/orders/1", method=method)
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"
    assert "GET" in response.headers["Allow"]


def test_healthz_needs_nothing_and_readyz_checks_mysql_its_schema_and_redis(
    client: FlaskClient,
) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.get_json()
    assert body["status"] == "ok"
    assert body["checks"] == {"mysql": "ok", "schema": "ok", "redis": "ok"}
    # No invalidator follows this test's namespace: said in the body, and still ready.
    assert body["invalidation"] == {"status": "absent", "max_lag_seconds": 2.0}


def test_openapi_describes_every_route(client: FlaskClient, app: Flask) -> None:
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    routes = {
        rule.rule.replace("<page>", "{page}")
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static" and not rule.rule.endswith(("/orders/", "/orders"))
    }
    assert routes <= set(document["paths"])


def test_openapi_names_no_host_of_its_own(client: FlaskClient) -> None:
    """A relative server: the document's own location (RFC 3986 5.2), whatever host serves it,
    never a developer's localhost."""
    document = client.get("/openapi.json", base_url="https://orders.example.test").get_json()
    assert [server["url"] for server in document["servers"]] == ["/"]


def test_an_unprintable_page_is_shown_escaped_once(client: FlaskClient) -> None:
    response = client.get("/orders/%00")
    assert response.status_code == 400
    detail = orjson.loads(response.data)["detail"]
    assert detail == "The page must be a positive whole number, not '\\x00'."


def test_keys_live_under_the_namespace_so_runs_can_share_redis(
    client: FlaskClient, settings: Settings, shared_redis: redis.Redis
) -> None:
    client.get("/orders/5")
    keys = {key.decode() for key in shared_redis.scan_iter(match=f"{settings.cache_prefix}:*")}
    assert keys
    assert all(key.startswith(f"{settings.cache_prefix}:s10:") for key in keys)


def test_fills_expire_spread_over_the_last_tenth_of_the_ttl(
    client: FlaskClient, settings: Settings, shared_redis: redis.Redis
) -> None:
    """TTL jitter: a cold start's pages do not all expire in the same second, and none is kept
    fresh longer than ORDERS_CACHE_TTL."""
    started_ms = time.time() * 1000
    for page in range(1, 41):
        client.get(f"/orders/{page}")
    keys = CacheKeys(settings.cache_prefix, settings.page_size)
    fresh_for = [
        int(shared_redis.get(keys.page(page)).split(b"|", 1)[0]) - started_ms
        for page in range(1, 41)
    ]
    ttl_ms = settings.cache_ttl * 1000
    assert all(0.9 * ttl_ms - 5000 <= f <= ttl_ms for f in fresh_for)
    assert max(fresh_for) - min(fresh_for) > 0.01 * ttl_ms
