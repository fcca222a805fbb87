"""Bearer tokens on the real app (MariaDB, Redis) with real signed JWTs and a JWKS over HTTP.

Every refusal is an RFC 6750 challenge in problem+json; the probes, /metrics and the OpenAPI
document stay open; pages become private to the caller.
"""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from collections.abc import Callable, Iterator

import hypothesis
import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient

from service import close_app, create_app
from service.auth.jwks import JWKS_MAX_BYTES, http_fetch, parse_jwks
from service.config import Settings
from service.wiring import api_services
from tests.support.tokens import (
    AUDIENCE,
    ISSUER,
    IdentityProvider,
    SigningKey,
    claims,
    hmac_with_public_key,
    unsigned_token,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey.generate("RS256")


@pytest.fixture
def idp(rsa_key: SigningKey) -> Iterator[IdentityProvider]:
    provider = IdentityProvider(rsa_key).start()
    yield provider
    provider.stop()


def auth_settings(settings: Settings, jwks_url: str, **extra: object) -> Settings:
    values: dict[str, object] = {
        "auth_issuer": ISSUER,
        "auth_audience": AUDIENCE,
        "auth_jwks_url": jwks_url,
        "auth_jwks_refresh_interval": 0.0,
        **extra,
    }
    return dataclasses.replace(settings, **values)  # type: ignore[arg-type]


def keys_loaded(app: Flask) -> Flask:
    """Wait for the worker's first key set fetch (it runs in the background)."""
    keys = api_services(app).verifier.keys  # type: ignore[union-attr]
    wait_for(lambda: keys.generation > 0, 10, "the first JWKS fetch")
    return app


@pytest.fixture
def auth_app(settings: Settings, idp: IdentityProvider) -> Iterator[Flask]:
    application = keys_loaded(create_app(auth_settings(settings, idp.jwks_url)))
    application.testing = True
    yield application
    close_app(application)


@pytest.fixture
def auth_client(auth_app: Flask) -> FlaskClient:
    return auth_app.test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def challenge(response: object) -> dict[str, str]:
    """The parameters of the response's ``WWW-Authenticate: Bearer`` challenge."""
    header = response.headers["WWW-Authenticate"]  # type: ignore[attr-defined]
    assert header.startswith('Bearer realm="orders"'), header
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def assert_refused(response: object, status: int, error: str | None) -> dict[str, str]:
    assert response.status_code == status  # type: ignore[attr-defined]
    assert response.mimetype == "application/problem+json"  # type: ignore[attr-defined]
    document = response.get_json()  # type: ignore[attr-defined]
    assert document["status"] == status
    assert document["detail"]
    params = challenge(response)
    assert params.get("error") == error
    if error is not None:
        assert params["error_description"] == document["detail"]
    return params


def test_a_valid_token_reads_a_page(auth_client: FlaskClient, rsa_key: SigningKey) -> None:
    response = auth_client.get("/orders/1", headers=bearer(rsa_key.sign(claims())))
    assert response.status_code == 200
    assert len(response.get_json()["orders"]) == 10


def test_pages_are_private_and_vary_on_authorization(
    auth_client: FlaskClient, rsa_key: SigningKey
) -> None:
    headers = bearer(rsa_key.sign(claims()))
    first = auth_client.get("/orders/2", headers=headers)
    assert first.headers["Cache-Control"].startswith("private, ")
    assert "public" not in first.headers["Cache-Control"]
    assert "Authorization" in first.vary
    again = auth_client.get(
        "/orders/2", headers={**headers, "If-None-Match": first.headers["ETag"]}
    )
    assert again.status_code == 304
    assert again.headers["Cache-Control"].startswith("private, ")
    assert "Authorization" in again.vary


def test_without_auth_pages_do_not_vary_on_authorization(client: FlaskClient) -> None:
    response = client.get("/orders/1")
    assert response.status_code == 200
    assert "Authorization" not in response.vary
    assert "WWW-Authenticate" not in response.headers


def test_no_token_is_a_bare_bearer_challenge(auth_client: FlaskClient) -> None:
    response = auth_client.get("/orders/1")
    assert_refused(response, 401, None)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="orders"'


@pytest.mark.parametrize(
    ("authorization", "status", "error"),
    [
        ("Basic dXNlcjpwYXNz", 401, None),
        ("Bearer", 400, "invalid_request"),
        ("Bearer ", 400, "invalid_request"),
        ("Bearer two tokens", 400, "invalid_request"),
        ('Bearer "quoted"', 400, "invalid_request"),
        ("Bearer not-a-jwt", 401, "invalid_token"),
        ("Bearer a.b.c", 401, "invalid_token"),
        ("garbage", 401, None),
    ],
)
def test_malformed_authorization_headers_are_refused(
    auth_client: FlaskClient, authorization: str, status: int, error: str | None
) -> None:
    response = auth_client.get("/orders/1", headers={"Authorization": authorization})
    assert_refused(response, status, error)


@pytest.mark.parametrize(
    ("make_claims", "reason"),
    [
        (lambda: claims(lifetime=-120), "expired"),
        (lambda: claims(nbf=int(time.time()) + 600), "not valid yet"),
        (lambda: claims(issuer="https://evil.test/"), "another issuer"),
        (lambda: claims(audience="someone-else"), "another audience"),
        (lambda: claims(exp=None), "lacks the exp claim"),
    ],
    ids=["expired", "not-yet-valid", "wrong-issuer", "wrong-audience", "no-exp"],
)
def test_invalid_tokens_are_401_invalid_token(
    auth_client: FlaskClient,
    rsa_key: SigningKey,
    make_claims: Callable[[], dict[str, object]],
    reason: str,
) -> None:
    # Claims are made when the test runs, not at collection: a long suite would age them.
    response = auth_client.get("/orders/1", headers=bearer(rsa_key.sign(make_claims())))
    params = assert_refused(response, 401, "invalid_token")
    assert reason in params["error_description"]


def test_a_token_within_the_leeway_is_accepted(
    auth_client: FlaskClient, rsa_key: SigningKey
) -> None:
    response = auth_client.get("/orders/1", headers=bearer(rsa_key.sign(claims(lifetime=-5))))
    assert response.status_code == 200


def test_a_token_without_the_scope_is_403_insufficient_scope(
    auth_client: FlaskClient, rsa_key: SigningKey
) -> None:
    token = rsa_key.sign(claims(scope="profile orders:write"))
    params = assert_refused(
        auth_client.get("/orders/1", headers=bearer(token)), 403, "insufficient_scope"
    )
    assert params["scope"] == "orders:read"


@pytest.mark.parametrize(
    "grant",
    [{"scope": "openid orders:read"}, {"scope": None, "scp": ["orders:read"]}],
    ids=["scope-string", "scp-list"],
)
def test_the_scope_may_come_as_scope_or_scp(
    auth_client: FlaskClient, rsa_key: SigningKey, grant: dict[str, object]
) -> None:
    token = rsa_key.sign(claims(**grant))  # type: ignore[arg-type]
    assert auth_client.get("/orders/1", headers=bearer(token)).status_code == 200


def test_alg_none_is_refused(auth_client: FlaskClient, rsa_key: SigningKey) -> None:
    token = unsigned_token(claims(), rsa_key.kid)
    assert_refused(auth_client.get("/orders/1", headers=bearer(token)), 401, "invalid_token")


def test_hs256_keyed_with_the_public_key_is_refused(
    auth_client: FlaskClient, rsa_key: SigningKey
) -> None:
    token = hmac_with_public_key(rsa_key, claims())
    assert_refused(auth_client.get("/orders/1", headers=bearer(token)), 401, "invalid_token")


def test_a_token_signed_by_another_key_with_a_known_kid_is_refused(
    auth_client: FlaskClient, rsa_key: SigningKey
) -> None:
    impostor = SigningKey.generate("RS256", kid=rsa_key.kid)
    params = assert_refused(
        auth_client.get("/orders/1", headers=bearer(impostor.sign(claims()))), 401, "invalid_token"
    )
    assert "signature" in params["error_description"]


def test_a_rotated_in_key_is_fetched_on_its_first_kid(
    auth_client: FlaskClient, idp: IdentityProvider, rsa_key: SigningKey
) -> None:
    """The first token naming it gets 503 (the fetch runs in the background), then 200; the
    cached old key needs no fetch. (tests/integration/test_auth_jwks_server.py has the rest.)"""
    assert auth_client.get("/orders/1", headers=bearer(rsa_key.sign(claims()))).status_code == 200
    fetched = idp.fetches
    new_key = SigningKey.generate("ES256")
    token = new_key.sign(claims())
    idp.rotate_in(new_key)
    assert auth_client.get("/orders/1", headers=bearer(token)).status_code == 503
    wait_for(lambda: auth_client.get("/orders/1", headers=bearer(token)).status_code == 200, 10)
    assert idp.fetches == fetched + 1
    assert auth_client.get("/orders/1", headers=bearer(rsa_key.sign(claims()))).status_code == 200
    assert idp.fetches == fetched + 1


def test_made_up_kids_cannot_hammer_the_identity_provider(
    settings: Settings, idp: IdentityProvider, rsa_key: SigningKey
) -> None:
    app = keys_loaded(
        create_app(auth_settings(settings, idp.jwks_url, auth_jwks_refresh_interval=600.0))
    )
    try:
        client = app.test_client()
        assert client.get("/orders/1", headers=bearer(rsa_key.sign(claims()))).status_code == 200
        attacker = SigningKey.generate("RS256")
        for _ in range(20):
            forged = attacker.sign(claims(), kid=uuid.uuid4().hex)
            # may be valid until a fetch after it was seen says otherwise: 503, never a fetch now
            assert client.get("/orders/1", headers=bearer(forged)).status_code == 503
        assert idp.fetches == 1
    finally:
        close_app(app)


def test_an_identity_provider_that_was_never_reachable_fails_closed_with_503(
    settings: Settings, rsa_key: SigningKey
) -> None:
    down = IdentityProvider(rsa_key)  # never started: connection refused
    app = create_app(auth_settings(settings, down.jwks_url))
    try:
        response = app.test_client().get("/orders/1", headers=bearer(rsa_key.sign(claims())))
        assert response.status_code == 503
        assert response.mimetype == "application/problem+json"
        assert int(response.headers["Retry-After"]) >= 1
        assert "identity provider" in response.get_json()["detail"]
    finally:
        close_app(app)


@pytest.mark.parametrize("outage", ["refused", "http-500"])
def test_cached_keys_keep_working_while_the_jwks_endpoint_is_down(
    settings: Settings, rsa_key: SigningKey, outage: str
) -> None:
    idp = IdentityProvider(rsa_key).start()
    # A cache time of 1 s: the background fetches again every second, and fails.
    app = keys_loaded(create_app(auth_settings(settings, idp.jwks_url, auth_jwks_cache_time=1)))
    try:
        client = app.test_client()
        assert client.get("/orders/1", headers=bearer(rsa_key.sign(claims()))).status_code == 200
        if outage == "refused":
            idp.stop()
        else:
            idp.failing = True
        keys = api_services(app).verifier.keys  # type: ignore[union-attr]
        fetches = keys.fetches
        wait_for(lambda: keys.fetches >= fetches + 1 and keys._last_error, 10, "a failed fetch")
        response = client.get("/orders/1", headers=bearer(rsa_key.sign(claims(sub="other"))))
        assert response.status_code == 200
        unknown = SigningKey.generate("RS256").sign(claims())
        refused = client.get("/orders/1", headers=bearer(unknown))
        assert refused.status_code == 503
        assert "Retry-After" in refused.headers
    finally:
        close_app(app)
        idp.stop()


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json"])
def test_probes_metrics_and_the_document_need_no_token(auth_client: FlaskClient, path: str) -> None:
    response = auth_client.get(path)
    assert response.status_code == 200
    assert "WWW-Authenticate" not in response.headers
    assert "Authorization" not in response.vary


@pytest.mark.parametrize(("method", "path"), [("GET", "/nowhere"), ("POST", "/orders/1")])
def test_everything_else_is_refused_without_a_token(
    auth_client: FlaskClient, method: str, path: str
) -> None:
    assert_refused(auth_client.open(path, method=method), 401, None)


def test_a_verified_token_is_not_verified_again(
    auth_app: Flask, rsa_key: SigningKey, idp: IdentityProvider
) -> None:
    client = auth_app.test_client()
    verifier = api_services(auth_app).verifier
    headers = bearer(rsa_key.sign(claims()))
    for page in (1, 2, 3, 1):
        assert client.get(f"/orders/{page}", headers=headers).status_code == 200
    assert verifier.signature_checks == 1
    assert idp.fetches == 1


@pytest.mark.parametrize("operation", ["/orders/{page}", "/healthz", "/openapi.json"])
def test_with_auth_on_every_response_still_matches_the_document(
    auth_app: Flask, operation: str
) -> None:
    """Generated requests carry no token: the 401s they get must be documented ones."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", auth_app)
    seen: list[int] = []

    @hypothesis.given(case=schema[operation]["GET"].as_strategy())
    @hypothesis.settings(
        max_examples=25,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        seen.append(case.call_and_validate().status_code)

    check()
    assert seen
    assert set(seen) == ({401} if operation == "/orders/{page}" else {200})


def test_the_document_declares_the_bearer_scheme(client: FlaskClient) -> None:
    document = client.get("/openapi.json").get_json()
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    page = document["paths"]["/orders/{page}"]["get"]
    assert {"bearerAuth": ["orders:read"]} in page["security"]
    assert {"401", "403"} <= set(page["responses"])
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert document["paths"][path]["get"]["security"] == []


def test_a_key_set_over_one_mebibyte_is_refused(rsa_key: SigningKey) -> None:
    provider = IdentityProvider(rsa_key).start()
    try:
        fetch = http_fetch(provider.jwks_url, timeout=10)
        assert parse_jwks(fetch())  # the real set is fine
        provider.body = b'{"keys": [], "pad": "' + b"x" * JWKS_MAX_BYTES + b'"}'
        with pytest.raises(ValueError, match="larger than"):
            fetch()
        provider.failing = True
        with pytest.raises(ValueError, match="HTTP 500"):
            fetch()
    finally:
        provider.stop()


def test_keys_named_in_the_token_header_are_never_fetched_or_used(
    auth_client: FlaskClient, rsa_key: SigningKey
) -> None:
    """jku/jwk/x5u in the header (RFC 7515 4.1.2-5) would let the attacker choose the key."""
    attacker = SigningKey.generate("RS256")
    decoy = IdentityProvider(attacker).start()
    try:
        token = attacker.sign(claims(), jku=decoy.jwks_url, jwk=attacker.public_jwk())
        # its kid is not in the set: 503 until a fetch of the configured set says so, then 401
        assert auth_client.get("/orders/1", headers=bearer(token)).status_code in (401, 503)
        assert decoy.fetches == 0
    finally:
        decoy.stop()


@pytest.mark.parametrize("scheme", ["bearer", "BEARER"])
def test_the_scheme_is_case_insensitive(
    auth_client: FlaskClient, rsa_key: SigningKey, scheme: str
) -> None:
    headers = {"Authorization": f"{scheme} {rsa_key.sign(claims())}"}
    assert auth_client.get("/orders/1", headers=headers).status_code == 200


def test_a_token_in_the_query_string_is_not_accepted(
    auth_client: FlaskClient, rsa_key: SigningKey
) -> None:
    response = auth_client.get(f"/orders/1?access_token={rsa_key.sign(claims())}")
    assert_refused(response, 401, None)


def test_the_fast_path_serves_a_cached_page_only_to_a_valid_token(
    settings: Settings, idp: IdentityProvider, rsa_key: SigningKey
) -> None:
    """A page in the near cache is answered in front of Flask (service.api.hits), but only after
    the pipeline's token check, with the same private Cache-Control and Vary as the view's; a
    refusal is the pipeline's, before either (service.api.pipeline)."""
    import copy

    from werkzeug.test import Client

    app = keys_loaded(create_app(auth_settings(settings, idp.jwks_url, cache_max_lag=3600.0)))
    try:
        client = app.test_client()
        near = api_services(app).near
        assert near is not None
        wait_for(near.live, 10, "the near cache's invalidation feed")
        good = bearer(rsa_key.sign(claims()))
        for _ in range(3):
            assert client.get("/orders/21", headers=good).status_code == 200
        handled: list[str] = []
        app.before_request_funcs.setdefault(None, []).insert(0, lambda: handled.append("flask"))
        fast = client.get("/orders/21", headers={**good, "X-Request-ID": "auth-1"})
        assert handled == []
        assert fast.headers["X-Cache"] == "HIT"
        assert fast.headers["Vary"] == "Authorization"
        assert fast.headers["Cache-Control"].startswith("private")
        slow = copy.copy(app.wsgi_app)
        slow.hits = None  # type: ignore[attr-defined]
        view = Client(slow).get("/orders/21", headers={**good, "X-Request-ID": "auth-1"})
        assert sorted(fast.headers.items()) == sorted(view.headers.items())
        assert fast.data == view.data
        handled.clear()
        assert_refused(client.get("/orders/21"), 401, None)
        expired = bearer(rsa_key.sign(claims(lifetime=-3600)))
        fetched = idp.fetches
        assert_refused(client.get("/orders/21", headers=expired), 401, "invalid_token")
        assert idp.fetches == fetched  # verified once, by the pipeline
        assert handled == []  # refused before the fast path or Flask
    finally:
        close_app(app)


def test_a_jwks_failure_during_the_fast_path_is_logged_with_this_requests_id(
    settings: Settings, rsa_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path (service.api.hits) verifies the token before Flask's request hook runs, so
    whatever is logged while verifying (the JWKS fetch failing) must already carry the id of the
    request it belongs to, the one echoed in X-Request-ID, not an earlier request's. (The bound
    context is read where the line is made: module loggers keep the stream of the test that
    first used them, so the line itself cannot be captured reliably in a full run.)"""
    import structlog

    down = IdentityProvider(rsa_key)  # never started: connection refused
    app = create_app(auth_settings(settings, down.jwks_url))
    try:
        verifier = api_services(app).verifier
        assert verifier is not None
        bound: list[object] = []
        verify = verifier.verify

        def noting_the_context(token: str) -> object:
            bound.append(structlog.contextvars.get_contextvars().get("request_id"))
            return verify(token)

        monkeypatch.setattr(verifier, "verify", noting_the_context)
        client = app.test_client()
        assert client.get("/healthz", headers={"X-Request-ID": "earlier-1"}).status_code == 200
        response = client.get(
            "/orders/1", headers={**bearer(rsa_key.sign(claims())), "X-Request-ID": "this-1"}
        )
        assert response.status_code == 503
        assert response.headers["X-Request-ID"] == "this-1"
        assert bound == ["this-1"]  # verified once, with this request's id bound
    finally:
        close_app(app)
