"""One request pipeline (service.api.pipeline): with the fast path on or off, every answer is the
same, byte for byte (status, headers, body), on every route: hits, misses, revalidations, bad
input, wrong methods, unknown paths, probes, auth refusals and the admin port's split.

Each world runs one script of requests twice against the real MariaDB and Redis, from an empty
cache namespace: once as served (fast path on), once with the fast path switched off (everything
through Flask). The script also checks that the fast path did answer the hits it should.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest
import redis
from flask import Flask, request

from service import close_app, create_app
from service.api.pipeline import Pipeline
from service.config import Settings
from service.wiring import api_services as services
from tests.support.tokens import AUDIENCE, ISSUER, IdentityProvider, SigningKey, claims
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

PUBLIC, ADMIN = "5001", "9464"
PAGE = "/orders/3"


class Step(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]
    port: str = PUBLIC
    fast: bool = False  # the fast path must answer this one (fast world)
    volatile: bool = False  # a body that changes by itself (/metrics, /status): headers only


class Answer(NamedTuple):
    status: str
    headers: list[tuple[str, str]]
    body: bytes
    by_flask: bool


def _script(auth: dict[str, dict[str, str]], split: bool) -> list[Step]:
    """Every kind of request, each with a fixed X-Request-ID so the echoed id is compared too."""
    good = auth.get("good", {})
    steps = [
        Step("GET", PAGE, good),  # miss: MySQL fills Redis
        Step("GET", PAGE, good, fast=True),  # Redis hit, fills the near cache
        Step("GET", PAGE, good, fast=True),  # near-cache hit
        Step("GET", PAGE, {**good, "If-None-Match": "*"}, fast=True),  # 304
        Step("GET", PAGE, {**good, "If-None-Match": 'W/"nope-1"'}, fast=True),  # 200 anyway
        Step("HEAD", PAGE, good),
        Step("POST", PAGE, good),  # 405 with Allow
        Step("GET", "/orders/101", good),  # past the last page
        *(Step("GET", f"/orders/{bad}", good) for bad in ("0", "abc", "%00", "", "1/2")),
        Step("GET", "/orders", good),
        Step("GET", "/nope", good),
        Step("GET", "/openapi.json", {}),
    ]
    admin = ADMIN if split else PUBLIC
    for path in ("/healthz", "/readyz", "/metrics", "/status"):
        steps.append(Step("GET", path, good, port=admin, volatile=path in {"/metrics", "/status"}))
        if split:
            steps.append(Step("GET", path, good, port=PUBLIC))  # 404 on the public port
    if split:
        steps.append(Step("GET", PAGE, good, port=ADMIN))  # a page on the admin port: 404
    steps.extend(Step("GET", PAGE, headers) for name, headers in auth.items() if name != "good")
    return [
        step._replace(headers={**step.headers, "X-Request-ID": f"cmp-{i}"})
        for i, step in enumerate(steps)
    ]


def _run(app: Flask, steps: list[Step]) -> list[Answer]:
    handled: list[str] = []

    def note() -> None:
        handled.append(request.path)

    app.before_request_funcs.setdefault(None, []).insert(0, note)
    client = app.test_client()
    answers = []
    for step in steps:
        before = len(handled)
        response = client.open(
            step.path,
            method=step.method,
            headers=step.headers,
            environ_overrides={"SERVER_PORT": step.port},
        )
        answers.append(
            Answer(
                response.status,
                list(response.headers.items()),
                response.get_data(),
                len(handled) > before,
            )
        )
    return answers


def _compare(steps: list[Step], fast: list[Answer], slow: list[Answer]) -> None:
    for step, on, off in zip(steps, fast, slow, strict=True):
        where = f"{step.method} {step.path} on {step.port}"
        assert on.status == off.status, where
        if step.volatile:
            assert _without_length(on.headers) == _without_length(off.headers), where
        else:
            assert on.headers == off.headers, where  # same headers, same order
            assert on.body == off.body, where
        if step.fast:
            assert (on.by_flask, off.by_flask) == (False, True), f"{where}: fast path, then Flask"
        else:  # Flask, or the pipeline itself (a refusal) either way
            assert on.by_flask == off.by_flask, where


def _without_length(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in headers if name != "Content-Length"]


def _both_ways(
    build: Callable[[], Flask], steps: list[Step], prefix: str, shared_redis: redis.Redis
) -> tuple[list[Answer], list[Answer]]:
    results = []
    for fast_path in (True, False):
        for key in shared_redis.scan_iter(match=f"{prefix}:*"):
            shared_redis.unlink(key)  # both runs start from an empty cache
        app = build()
        try:
            pipeline = app.wsgi_app
            assert isinstance(pipeline, Pipeline)
            if not fast_path:
                pipeline.hits = None
            near = services(app).near
            assert near is not None
            wait_for(near.live, 10, "the near cache's invalidation feed")
            results.append(_run(app, steps))
        finally:
            close_app(app)
    fast, slow = results
    return fast, slow


def test_without_auth_the_fast_path_answers_as_flask_does(
    settings: Settings, shared_redis: redis.Redis
) -> None:
    steps = _script({}, split=False)
    fast, slow = _both_ways(
        lambda: create_app(dataclasses.replace(settings, cache_max_lag=3600.0)),
        steps,
        settings.cache_prefix,
        shared_redis,
    )
    _compare(steps, fast, slow)
    assert {a.status[:3] for a in fast} >= {"200", "304", "400", "404", "405"}


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider(SigningKey.generate("RS256")).start()
    yield provider
    provider.stop()


def test_with_auth_and_an_admin_port_the_fast_path_answers_as_flask_does(
    settings: Settings, shared_redis: redis.Redis, idp: IdentityProvider
) -> None:
    key = idp.keys[0]
    auth = {
        "good": {"Authorization": f"Bearer {key.sign(claims())}"},
        "none": {},
        "basic": {"Authorization": "Basic dXNlcjpwYXNz"},
        "malformed": {"Authorization": "Bearer a b"},
        "expired": {"Authorization": f"Bearer {key.sign(claims(lifetime=-3600))}"},
        "no scope": {"Authorization": f"Bearer {key.sign(claims(scope='other'))}"},
    }
    configured = dataclasses.replace(
        settings,
        cache_max_lag=3600.0,
        admin_port=int(ADMIN),
        auth_issuer=ISSUER,
        auth_audience=AUDIENCE,
        auth_jwks_url=idp.jwks_url,
        auth_jwks_refresh_interval=0.0,
    )

    def build() -> Flask:
        app = create_app(configured)
        keys: Any = services(app).verifier.keys  # type: ignore[union-attr]
        wait_for(lambda: keys.generation > 0, 10, "the first JWKS fetch")
        return app

    steps = _script(auth, split=True)
    fast, slow = _both_ways(build, steps, settings.cache_prefix, shared_redis)
    _compare(steps, fast, slow)
    assert {a.status[:3] for a in fast} >= {"200", "304", "400", "401", "403", "404", "405"}
