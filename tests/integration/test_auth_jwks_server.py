"""The identity provider misbehaving over real HTTP: a key set served a byte at a time, an
endpoint that never answers, keys rotated in and withdrawn, garbage among the keys. Request
threads never wait for it; a token that may be valid gets 503 with Retry-After, never a 401."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest
from flask import Flask

from service import close_app, create_app
from service.auth.jwks import http_fetch
from service.config import Settings
from service.wiring import api_services
from tests.support.tokens import AUDIENCE, ISSUER, IdentityProvider, SigningKey, claims
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

# Unloaded, a refusal or a cached verification takes a millisecond or two.
QUICK_S = 1.0


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate("RS256", kid="current")


@pytest.fixture
def idp(key: SigningKey) -> Iterator[IdentityProvider]:
    provider = IdentityProvider(key).start()
    yield provider
    provider.stop()


def app_for(settings: Settings, idp: IdentityProvider, **extra: object) -> Flask:
    values: dict[str, object] = {
        "auth_issuer": ISSUER,
        "auth_audience": AUDIENCE,
        "auth_jwks_url": idp.jwks_url,
        "auth_jwks_refresh_interval": 0.2,
        "auth_jwks_timeout": 1.0,
        **extra,
    }
    app = create_app(dataclasses.replace(settings, **values))  # type: ignore[arg-type]
    app.testing = True
    return app


def get(app: Flask, token: str) -> tuple[int, dict[str, str], float]:
    began = time.monotonic()
    response = app.test_client().get("/orders/1", headers={"Authorization": f"Bearer {token}"})
    return response.status_code, dict(response.headers), time.monotonic() - began


def loaded(app: Flask) -> None:
    keys = api_services(app).verifier.keys  # type: ignore[union-attr]
    wait_for(lambda: keys.publishes("current"), timeout=10, what="the first key set fetch")


def test_one_deadline_bounds_a_whole_fetch_of_a_trickled_key_set(idp: IdentityProvider) -> None:
    idp.mode = "trickle"  # a ~1 KB set at one byte per 50 ms: ~60 s, every read in time
    fetch = http_fetch(idp.jwks_url, timeout=1.0)
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        fetch()
    assert time.monotonic() - began < 3.0


def test_a_hanging_endpoint_is_given_up_at_the_deadline(idp: IdentityProvider) -> None:
    idp.mode = "hang"
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        http_fetch(idp.jwks_url, timeout=1.0)()
    assert time.monotonic() - began < 3.0


@pytest.mark.parametrize("mode", ["hang", "trickle"])
def test_unknown_kids_never_wait_for_a_slow_endpoint_and_cached_tokens_still_pass(
    settings: Settings, idp: IdentityProvider, key: SigningKey, mode: str
) -> None:
    app = app_for(settings, idp, auth_jwks_timeout=5.0)
    try:
        loaded(app)
        idp.mode = mode
        forged = SigningKey.generate("RS256")
        for n in range(4):
            status, headers, took = get(app, forged.sign(claims(), kid=f"made-up-{n}"))
            assert status == 503
            assert int(headers["Retry-After"]) >= 1
            assert took < QUICK_S, f"an unknown kid waited {took:.2f} s for the key set"
        status, _, took = get(app, key.sign(claims()))
        assert status == 200
        assert took < QUICK_S
    finally:
        close_app(app)


def test_a_key_published_after_the_last_fetch_is_503_then_accepted(
    settings: Settings, idp: IdentityProvider
) -> None:
    app = app_for(settings, idp)
    try:
        loaded(app)
        rotated = SigningKey.generate("ES256", kid="rotated")
        idp.rotate_in(rotated)
        token = rotated.sign(claims())
        status, headers, _ = get(app, token)
        assert status == 503, "a token that may be valid was refused outright"
        assert int(headers["Retry-After"]) >= 1
        wait_for(lambda: get(app, token)[0] == 200, timeout=10, what="the rotated key")
    finally:
        close_app(app)


def test_a_withdrawn_key_stops_verifying_within_the_cache_time_and_a_fetch(
    settings: Settings, idp: IdentityProvider, key: SigningKey
) -> None:
    spare = SigningKey.generate("RS256", kid="spare")
    idp.rotate_in(spare)
    app = app_for(settings, idp, auth_jwks_cache_time=1)
    try:
        loaded(app)
        token = key.sign(claims())
        assert get(app, token)[0] == 200  # verified, and now in the token cache
        idp.withdraw(key)
        withdrawn = time.monotonic()
        wait_for(lambda: get(app, token)[0] == 401, timeout=10, what="the withdrawn key refused")
        assert time.monotonic() - withdrawn < 1 + 1.0 + 2.0  # cache time + deadline + slack
        assert get(app, spare.sign(claims()))[0] == 200
    finally:
        close_app(app)


def test_garbage_among_the_keys_is_ignored(
    settings: Settings, idp: IdentityProvider, key: SigningKey
) -> None:
    idp.extra = [
        {"kty": "RSA", "kid": "garbage", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "kid": "bad-curve", "crv": "P-256", "x": "AA", "y": "AA"},
    ]
    app = app_for(settings, idp)
    try:
        loaded(app)
        assert get(app, key.sign(claims()))[0] == 200
        forged = SigningKey.generate("RS256")
        assert get(app, forged.sign(claims(), kid="garbage"))[0] == 401
        forged_ec = SigningKey.generate("ES256")
        assert get(app, forged_ec.sign(claims(), kid="bad-curve"))[0] == 401
    finally:
        close_app(app)
