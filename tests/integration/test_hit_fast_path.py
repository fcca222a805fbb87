"""The fast path for cache hits (service.api.hits) against the real MariaDB and Redis.

It must answer exactly what Flask's view would (status, headers, body), leave the same metrics and
log line (both the pipeline's), hand everything it cannot answer exactly to Flask, and never make a
request read Redis twice. tests/integration/test_pipeline.py compares the two on every route.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import Client

from service import close_app, create_app
from service.api import hits
from service.api.pipeline import Pipeline
from service.cache.aside import RedisRead
from service.config import RedisURL, Settings
from service.observability import logging as obs_logging
from service.observability import metrics, tracing
from service.wiring import api_services
from tests.support.servers import free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def fast_app(settings: Settings) -> Iterator[Flask]:
    # A wide lag bound: no invalidator runs here, and these tests are not about the bound.
    app = create_app(dataclasses.replace(settings, cache_max_lag=3600.0))
    app.testing = True
    near = api_services(app).near
    assert near is not None
    wait_for(near.live, 10, "the near cache's invalidation feed")
    yield app
    close_app(app)


@pytest.fixture
def fast_client(fast_app: Flask) -> FlaskClient:
    return fast_app.test_client()


def flask_requests(app: Flask) -> list[str]:
    """The paths Flask itself handles from now on (the fast path never reaches its hooks)."""
    seen: list[str] = []

    def note() -> None:
        from flask import request

        seen.append(request.path)

    app.before_request_funcs.setdefault(None, []).insert(0, note)
    return seen


def flask_only(app: Flask) -> Client:
    """A client of the same pipeline with the fast path off: the view's own answer."""
    pipeline = app.wsgi_app
    assert isinstance(pipeline, Pipeline)
    slow = copy.copy(pipeline)
    slow.hits = None
    return Client(slow)


def warm(client: FlaskClient, path: str) -> None:
    """A miss fills Redis; the Redis hit after it fills this worker's near cache."""
    assert client.get(path).headers["X-Cache"] == "MISS"
    assert client.get(path).status_code == 200


def test_a_near_cache_hit_is_answered_before_flask_exactly_as_the_view_would(
    fast_app: Flask, fast_client: FlaskClient
) -> None:
    warm(fast_client, "/orders/7")
    handled = flask_requests(fast_app)
    fast = fast_client.get("/orders/7", headers={"X-Request-ID": "fast-1"})
    assert handled == []
    view = flask_only(fast_app).get("/orders/7", headers={"X-Request-ID": "fast-1"})
    assert handled == ["/orders/7"]
    assert fast.status_code == view.status_code == 200
    assert fast.headers["X-Cache"] == view.headers["X-Cache"] == "HIT"
    assert fast.data == view.data
    assert sorted(fast.headers.items()) == sorted(view.headers.items())
    assert orjson.loads(fast.data)["orders"][0]["id"] == 61


def test_a_revalidation_is_a_304_from_the_fast_path_as_from_the_view(
    fast_app: Flask, fast_client: FlaskClient
) -> None:
    warm(fast_client, "/orders/8")
    etag = fast_client.get("/orders/8").headers["ETag"]
    handled = flask_requests(fast_app)
    headers = {"If-None-Match": etag, "X-Request-ID": "reval-1"}
    fast = fast_client.get("/orders/8", headers=headers)
    assert handled == []
    view = flask_only(fast_app).get("/orders/8", headers=headers)
    assert fast.status_code == view.status_code == 304
    assert fast.data == view.data == b""
    assert sorted(fast.headers.items()) == sorted(view.headers.items())
    other = fast_client.get("/orders/8", headers={"If-None-Match": 'W/"nope-1"'})
    assert other.status_code == 200


def test_every_fast_hit_is_counted_and_logged_like_any_request(
    fast_app: Flask,
    fast_client: FlaskClient,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    route = "/orders/<page>"
    histogram = metrics.HTTP_REQUEST_SECONDS.labels(route, "GET", "200")
    hits = metrics.CACHE_REQUESTS.labels(route, "hit")
    obs_logging.configure(settings)  # writes to this test's captured stdout
    warm(fast_client, "/orders/9")
    handled = flask_requests(fast_app)
    capsys.readouterr()
    requests_before = _count(histogram)
    hits_before = hits._value.get()
    for _ in range(5):
        assert fast_client.get("/orders/9").headers["X-Cache"] == "HIT"
    assert handled == []
    assert _count(histogram) - requests_before == 5
    assert hits._value.get() - hits_before == 5
    lines = [orjson.loads(line) for line in _request_lines(capsys)]
    assert len(lines) == 5
    view = flask_only(fast_app).get("/orders/9")
    (from_flask,) = (orjson.loads(line) for line in _request_lines(capsys))
    for line in lines:
        assert list(line) == list(from_flask)  # the same fields, in the same order
        assert {k: line[k] for k in ("method", "route", "path", "status", "cache")} == {
            "method": "GET",
            "route": route,
            "path": "/orders/9",
            "status": 200,
            "cache": "hit",
        }
    ids = {line["request_id"] for line in lines}
    assert len(ids) == 5  # one new id per request, echoed in its response
    assert view.headers["X-Request-ID"] == from_flask["request_id"]


def test_an_incoming_request_id_is_echoed_and_a_malformed_one_replaced(
    fast_client: FlaskClient,
) -> None:
    warm(fast_client, "/orders/10")
    echoed = fast_client.get("/orders/10", headers={"X-Request-ID": "abc.123:x/y"})
    assert echoed.headers["X-Request-ID"] == "abc.123:x/y"
    replaced = fast_client.get("/orders/10", headers={"X-Request-ID": "bad id\u00e9"})
    assert replaced.headers["X-Request-ID"] != "bad id\u00e9"
    assert len(replaced.headers["X-Request-ID"]) == 16


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/orders/101", 404),  # past the last page: Flask's problem document
        ("GET", "/orders/abc", 400),
        ("GET", "/orders/0", 400),
        ("GET", "/orders/11/", 404),
        ("HEAD", "/orders/11", 200),
        ("POST", "/orders/11", 405),
        ("GET", "/orders/12", 200),  # never served before: not in the near cache, a miss
    ],
)
def test_what_the_fast_path_cannot_answer_goes_to_flask(
    fast_app: Flask, fast_client: FlaskClient, method: str, path: str, status: int
) -> None:
    warm(fast_client, "/orders/11")
    handled = flask_requests(fast_app)
    response = fast_client.open(path, method=method)
    assert response.status_code == status
    assert handled == [path]


def test_with_tracing_on_hits_go_through_flask_and_its_instrumentation(
    fast_app: Flask, fast_client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    warm(fast_client, "/orders/13")
    handled = flask_requests(fast_app)
    monkeypatch.setattr(tracing, "active", lambda: True)
    assert fast_client.get("/orders/13").headers["X-Cache"] == "HIT"
    assert handled == ["/orders/13"]


def test_a_failure_inside_the_fast_path_is_answered_by_flask(
    fast_app: Flask, fast_client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    warm(fast_client, "/orders/14")
    handled = flask_requests(fast_app)

    def broken(*_args: object) -> None:
        raise RuntimeError("a bug in the fast path")

    # The renderer as the fast path holds it (Flask's view calls its own reference).
    monkeypatch.setattr(hits, "render", broken)
    response = fast_client.get("/orders/14")
    assert response.status_code == 200
    assert response.headers["X-Cache"] == "HIT"  # Flask's path, from the same near cache
    assert handled == ["/orders/14"]


def test_past_the_lag_bound_the_fast_path_steps_aside(settings: Settings) -> None:
    """No invalidator vouches for the entries: once the bound passes, Flask's path refills."""
    app = create_app(dataclasses.replace(settings, cache_max_lag=0.3))
    try:
        client = app.test_client()
        near = api_services(app).near
        assert near is not None
        wait_for(near.live, 10, "the near cache's invalidation feed")
        warm(client, "/orders/15")
        handled = flask_requests(app)
        pages = api_services(app).pages

        def page_past_the_bound() -> bool:
            # The page itself, not only the totals (filled a moment earlier, so past it first).
            read = pages.hit(15)
            return (
                isinstance(read, RedisRead)
                and read.lookup.page is not None
                and not pages.freshness.current(read.lookup.page.read_ms, read.redis_now)
            )

        wait_for(page_past_the_bound, 10, "the bound to pass")
        assert client.get("/orders/15").headers["X-Cache"] == "MISS"
        assert handled == ["/orders/15"]
    finally:
        close_app(app)


def test_on_the_admin_port_pages_are_not_served(settings: Settings) -> None:
    app = create_app(dataclasses.replace(settings, cache_max_lag=3600.0, admin_port=9464))
    try:
        client = app.test_client()
        near = api_services(app).near
        assert near is not None
        wait_for(near.live, 10, "the near cache's invalidation feed")
        public = {"SERVER_PORT": "5001"}
        assert client.get("/orders/16", environ_overrides=public).status_code == 200
        assert client.get("/orders/16", environ_overrides=public).status_code == 200
        hit = client.get("/orders/16", environ_overrides=public)
        assert hit.headers["X-Cache"] == "HIT"
        admin = client.get("/orders/16", environ_overrides={"SERVER_PORT": "9464"})
        assert admin.status_code == 404
        assert admin.mimetype == "application/problem+json"
    finally:
        close_app(app)


def test_a_redis_hit_is_answered_before_flask_exactly_as_the_view_would(
    settings: Settings,
) -> None:
    app = create_app(dataclasses.replace(settings, cache_max_lag=3600.0, near_cache=False))
    try:
        client = app.test_client()
        assert client.get("/orders/17").headers["X-Cache"] == "MISS"
        handled = flask_requests(app)
        redis_reads = metrics.REDIS_CALL_SECONDS.labels("mget")
        before = _count(redis_reads)
        fast = client.get("/orders/17", headers={"X-Request-ID": "redis-1"})
        assert handled == []
        assert _count(redis_reads) - before == 1
        view = flask_only(app).get("/orders/17", headers={"X-Request-ID": "redis-1"})
        assert fast.headers["X-Cache"] == view.headers["X-Cache"] == "HIT"
        assert fast.data == view.data
        assert sorted(fast.headers.items()) == sorted(view.headers.items())
    finally:
        close_app(app)


def test_a_miss_handed_to_flask_reads_redis_once(fast_app: Flask, fast_client: FlaskClient) -> None:
    redis_reads = metrics.REDIS_CALL_SECONDS.labels("mget")
    handled = flask_requests(fast_app)
    before = _count(redis_reads)
    assert fast_client.get("/orders/18").headers["X-Cache"] == "MISS"
    assert handled == ["/orders/18"]
    assert _count(redis_reads) - before == 1  # the fast path's read, reused by the view
    past = fast_client.get("/orders/1000")
    assert past.status_code == 404
    assert _count(redis_reads) - before == 2


def test_with_redis_down_one_failure_is_counted_per_request(settings: Settings) -> None:
    """The fast path's failed read travels on: Flask does not try Redis a second time."""
    app = create_app(
        dataclasses.replace(settings, redis_url=RedisURL(f"redis://127.0.0.1:{free_port()}/0", ""))
    )
    try:
        client = app.test_client()
        errors = metrics.REDIS_ERRORS.labels("mget")
        before = errors._value.get()
        response = client.get("/orders/19")
        assert response.status_code == 200
        assert response.headers["X-Cache"] in {"ERROR", "BYPASS"}
        assert errors._value.get() - before == 1
    finally:
        close_app(app)


def test_a_failure_after_the_fast_path_counted_a_hit_does_not_count_it_again(
    settings: Settings, restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Partial work, then an exception (here the log line's write fails once, as a full
    non-blocking stdout pipe does): the request is handed to Flask, which must not count it a
    second time nor read Redis a second time."""
    app = create_app(dataclasses.replace(settings, cache_max_lag=3600.0, near_cache=False))
    try:
        obs_logging.configure(settings)
        client = app.test_client()
        assert client.get("/orders/22").headers["X-Cache"] == "MISS"
        writer = obs_logging._state.request_line
        assert writer is not None
        emit = writer._emit
        failures: list[bytes] = []

        def fails_once(line: bytes) -> None:
            if not failures:
                failures.append(line)
                raise BlockingIOError(11, "write could not complete without blocking")
            emit(line)

        monkeypatch.setattr(writer, "_emit", fails_once)
        route = "/orders/<page>"
        histogram = metrics.HTTP_REQUEST_SECONDS.labels(route, "GET", "200")
        hits = metrics.CACHE_REQUESTS.labels(route, "hit")
        redis_reads = metrics.REDIS_CALL_SECONDS.labels("mget")
        requests_before, hits_before = _count(histogram), hits._value.get()
        reads_before = _count(redis_reads)
        response = client.get("/orders/22")
        assert response.status_code == 200
        assert failures  # the fast path did fail after its work
        counted = (
            _count(redis_reads) - reads_before,
            _count(histogram) - requests_before,
            hits._value.get() - hits_before,
        )
        assert counted == (1, 1, 1)  # Redis reads, requests, hits
    finally:
        close_app(app)


def test_an_entry_redis_cannot_decode_is_read_once_per_request(
    settings: Settings, shared_redis: object
) -> None:
    """A corrupt page entry makes the read raise outside the Redis call (decoding): the fast path
    swallows it and Flask reads the same entry again, two round trips for one request."""
    app = create_app(dataclasses.replace(settings, cache_max_lag=3600.0, near_cache=False))
    try:
        client = app.test_client()
        assert client.get("/orders/23").headers["X-Cache"] == "MISS"
        key = api_services(app).pages.redis.keys.page(23)
        shared_redis.set(key, b"not|an-entry")  # type: ignore[attr-defined]
        redis_reads = metrics.REDIS_CALL_SECONDS.labels("mget")
        before = _count(redis_reads)
        refilled = client.get("/orders/23")
        assert _count(redis_reads) - before == 1
        # Bad input from a server is neither a 500 nor a stuck page: read as missing, refilled.
        assert refilled.status_code == 200
        assert refilled.headers["X-Cache"] == "MISS"
        assert client.get("/orders/23").headers["X-Cache"] == "HIT"
    finally:
        close_app(app)


def test_a_fast_redis_hit_read_before_an_invalidation_is_not_kept_in_the_near_cache(
    fast_app: Flask, fast_client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The no-stale-set guarantee on the fast path: an invalidation that lands while hit() reads
    Redis keeps what it read out of the near cache (the answer itself may be the old copy)."""
    assert fast_client.get("/orders/24").headers["X-Cache"] == "MISS"  # now in Redis only
    pages = api_services(fast_app).pages
    near = pages.near
    assert near is not None
    near.clear()
    read = pages.redis.read

    def invalidated_meanwhile(number: int) -> object:
        found = read(number)
        near.clear()  # the listener applying an invalidation, between the read and the store
        return found

    monkeypatch.setattr(pages.redis, "read", invalidated_meanwhile)
    assert fast_client.get("/orders/24").headers["X-Cache"] == "HIT"
    assert near.get(24) == (None, None)


def _count(histogram: object) -> float:
    """Observations of one histogram child (its +Inf bucket)."""
    samples = histogram._child_samples()  # type: ignore[attr-defined]
    return next(s.value for s in samples if s.name == "_bucket" and s.labels["le"] == "+Inf")


def _request_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    out = capsys.readouterr().out
    return [line for line in out.splitlines() if '"logger":"service.request"' in line]
