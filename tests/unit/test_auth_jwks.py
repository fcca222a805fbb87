"""The JWKS cache as pure logic: a fake fetch and a fake clock, the background fetches run by
the test (``run_pending``); the real HTTP path, its deadline and a real background thread are in
tests/integration/test_auth_jwks_server.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from structlog.testing import capture_logs

from service.auth.jwks import JWKSCache, KeysUnavailable, UnknownKey, parse_jwks
from tests.support.tokens import SigningKey


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Endpoint:
    """What the identity provider answers: the current keys, or an error."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys = list(keys)
        self.extra: list[Any] = []
        self.error: Exception | None = None
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return json.dumps({"keys": [key.public_jwk() for key in self.keys] + self.extra}).encode()


@pytest.fixture(scope="module")
def old() -> SigningKey:
    return SigningKey.generate("RS256", kid="old")


@pytest.fixture(scope="module")
def new() -> SigningKey:
    return SigningKey.generate("ES256", kid="new")


def cache(endpoint: Endpoint, clock: Clock, **options: Any) -> JWKSCache:
    """A cache whose first fetch has run (as the worker's start-up fetch does)."""
    values: dict[str, Any] = {"cache_time": 55, "refresh_interval": 10, "timeout": 2, **options}
    keys = JWKSCache(
        "https://idp.test/jwks", fetch=endpoint, clock=clock, background=False, **values
    )
    keys.start()
    assert keys.run_pending()
    return keys


def test_keys_are_fetched_once_and_cached(old: SigningKey) -> None:
    endpoint, clock = Endpoint(old), Clock()
    keys = cache(endpoint, clock)
    first = keys.key("old", "RS256")
    clock.now += 54
    assert keys.key("old", "RS256") is first
    assert not keys.run_pending()
    assert endpoint.calls == 1


def test_before_the_first_fetch_every_token_is_503_not_401(old: SigningKey) -> None:
    endpoint, clock = Endpoint(old), Clock()
    keys = JWKSCache(
        "https://idp.test/jwks",
        cache_time=55,
        refresh_interval=10,
        timeout=2,
        fetch=endpoint,
        clock=clock,
        background=False,
    )
    keys.start()
    with pytest.raises(KeysUnavailable):
        keys.key("old", "RS256")
    assert endpoint.calls == 0  # the request thread fetched nothing
    keys.run_pending()
    assert keys.key("old", "RS256").algorithm_name == "RS256"


def test_an_old_set_keeps_verifying_while_a_fetch_runs_in_the_background(old: SigningKey) -> None:
    endpoint, clock = Endpoint(old), Clock()
    keys = cache(endpoint, clock)
    clock.now += 56
    keys.key("old", "RS256")
    assert endpoint.calls == 1  # not in the request's thread
    assert keys.run_pending()
    assert endpoint.calls == 2


def test_an_unknown_kid_is_503_until_a_fetch_after_it_was_seen_then_found(
    old: SigningKey, new: SigningKey
) -> None:
    endpoint, clock = Endpoint(old), Clock()
    keys = cache(endpoint, clock)
    endpoint.keys.append(new)  # published seconds after the last fetch
    clock.now += 3
    with pytest.raises(KeysUnavailable) as raised:
        keys.key("new", "ES256")
    assert endpoint.calls == 1  # never in the request's thread
    assert raised.value.retry_after == 7 + 2  # the next fetch allowed, plus its deadline
    assert not keys.run_pending()  # not due yet: one fetch per refresh interval
    clock.now += 7
    assert keys.run_pending()
    assert keys.key("new", "ES256").algorithm_name == "ES256"


def test_made_up_kids_are_401_once_a_later_fetch_lacks_them_and_fetch_once_per_interval(
    old: SigningKey,
) -> None:
    endpoint, clock = Endpoint(old), Clock()
    keys = cache(endpoint, clock)
    clock.now += 10
    for n in range(50):
        with pytest.raises(KeysUnavailable):
            keys.key(f"made-up-{n}", "RS256")
    assert keys.run_pending()
    assert not keys.run_pending()
    assert endpoint.calls == 2
    for n in range(50):
        with pytest.raises(UnknownKey):
            keys.key(f"made-up-{n}", "RS256")


def test_a_withdrawn_key_is_refused_after_the_fetch_that_lacks_it(
    old: SigningKey, new: SigningKey
) -> None:
    endpoint, clock = Endpoint(old, new), Clock()
    keys = cache(endpoint, clock)
    generation = keys.generation
    endpoint.keys.remove(new)
    clock.now += 55
    keys.key("new", "ES256")  # still honoured: the set is not re-fetched yet
    assert keys.run_pending()
    assert keys.generation != generation
    assert not keys.publishes("new")
    with pytest.raises(UnknownKey):  # 401 at once, not 503: the set was fetched after
        keys.key("new", "ES256")


def test_when_the_endpoint_fails_cached_keys_keep_verifying(old: SigningKey) -> None:
    endpoint, clock = Endpoint(old), Clock()
    keys = cache(endpoint, clock)
    endpoint.error = ConnectionRefusedError("refused")
    clock.now += 10_000  # far past the cache time
    keys.key("old", "RS256")
    assert keys.run_pending()
    keys.key("old", "RS256")
    assert endpoint.calls == 2


def test_an_uncached_kid_during_an_outage_is_unavailable_with_a_retry_after(
    old: SigningKey,
) -> None:
    endpoint, clock = Endpoint(old), Clock()
    keys = cache(endpoint, clock)
    endpoint.error = TimeoutError("timed out")
    clock.now += 20
    with pytest.raises(KeysUnavailable):
        keys.key("new", "ES256")
    assert keys.run_pending()  # fails
    clock.now += 4
    with pytest.raises(KeysUnavailable) as raised:
        keys.key("new", "ES256")
    assert raised.value.retry_after == 6 + 2
    assert "TimeoutError" in raised.value.reason


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"keys": {}}',
        b'{"keys": []}',
        b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}',
        b'{"keys": [{"kty": "RSA", "kid": "old", "n": "AQAB", "e": "AQAB"}]}',
    ],
)
def test_a_broken_key_set_does_not_replace_the_cached_one(old: SigningKey, body: bytes) -> None:
    endpoint, clock = Endpoint(old), Clock()
    keys = cache(endpoint, clock)
    keys._fetch = lambda: body
    clock.now += 400
    keys.key("old", "RS256")
    assert keys.run_pending()
    assert keys.key("old", "RS256").algorithm_name == "RS256"


def test_an_unparsable_key_is_ignored_with_a_log_line(old: SigningKey) -> None:
    endpoint, clock = Endpoint(old), Clock()
    endpoint.extra = [
        {"kty": "RSA", "kid": "broken-rsa", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "kid": "broken-ec", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "OKP", "kid": "broken-okp", "crv": "Ed25519", "x": 5},
    ]
    with capture_logs() as logs:
        keys = cache(endpoint, clock)
    ignored = {line["kid"] for line in logs if "cannot be parsed" in line["event"]}
    assert ignored == {"broken-rsa", "broken-ec", "broken-okp"}
    assert keys.key("old", "RS256").algorithm_name == "RS256"
    for kid, alg in (("broken-rsa", "RS256"), ("broken-ec", "ES256"), ("broken-okp", "EdDSA")):
        with pytest.raises(UnknownKey):  # a 401, never a 500
            keys.key(kid, alg)


def test_only_signature_keys_of_asymmetric_types_are_kept(old: SigningKey, new: SigningKey) -> None:
    encryption = {**new.public_jwk(), "kid": "enc", "use": "enc"}
    wrap_only = {**new.public_jwk(), "kid": "wrap", "key_ops": ["wrapKey"]}
    secret = {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}
    document = {"keys": [old.public_jwk(), encryption, wrap_only, secret, "junk", {"kid": 1}]}
    assert set(parse_jwks(json.dumps(document).encode())) == {"old"}


def test_a_key_must_fit_the_tokens_algorithm(old: SigningKey, new: SigningKey) -> None:
    keys = cache(Endpoint(old, new), Clock())
    with pytest.raises(UnknownKey, match="does not verify"):
        keys.key("old", "ES256")
    with pytest.raises(UnknownKey, match="does not verify"):
        keys.key("new", "ES384")
    with pytest.raises(UnknownKey, match="does not verify"):
        keys.key("old", "PS256")  # published with alg RS256


def test_a_key_without_alg_verifies_every_algorithm_of_its_type() -> None:
    rsa = SigningKey.generate("RS256", kid="plain")
    endpoint = Endpoint()
    endpoint.extra = [rsa.public_jwk(with_alg=False)]
    keys = cache(endpoint, Clock())
    assert keys.key("plain", "PS256").algorithm_name == "PS256"
    assert keys.key("plain", "RS256").algorithm_name == "RS256"


def test_a_token_without_kid_uses_the_only_key(old: SigningKey, new: SigningKey) -> None:
    assert cache(Endpoint(old), Clock()).key(None, "RS256").algorithm_name == "RS256"
    with pytest.raises((UnknownKey, KeysUnavailable)):
        cache(Endpoint(old, new), Clock()).key(None, "RS256")
