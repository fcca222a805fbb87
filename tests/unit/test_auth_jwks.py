"""The JWKS cache as pure logic: a fake fetch and a fake clock; the real HTTP path is in
tests/integration/test_auth_api.py."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

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
        self.error: Exception | None = None
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return json.dumps({"keys": [key.public_jwk() for key in self.keys]}).encode()


@pytest.fixture(scope="module")
def old() -> SigningKey:
    return SigningKey.generate("RS256", kid="old")


@pytest.fixture(scope="module")
def new() -> SigningKey:
    return SigningKey.generate("ES256", kid="new")


def cache(endpoint: Endpoint, clock: Clock, **options: Any) -> JWKSCache:
    values: dict[str, Any] = {"cache_time": 300, "refresh_interval": 10, "timeout": 1, **options}
    return JWKSCache("https://idp.test/jwks", fetch=endpoint, clock=clock, **values)


def test_keys_are_fetched_once_and_cached(old: SigningKey) -> None:
    endpoint, clock = Endpoint(old), Clock()
    keys = cache(endpoint, clock)
    first = keys.key("old", "RS256")
    clock.now += 299
    assert keys.key("old", "RS256") is first
    assert endpoint.calls == 1


def test_keys_are_fetched_again_after_the_cache_time(old: SigningKey) -> None:
    endpoint, clock = Endpoint(old), Clock()
    keys = cache(endpoint, clock)
    keys.key("old", "RS256")
    clock.now += 301
    keys.key("old", "RS256")
    assert endpoint.calls == 2


def test_an_unknown_kid_triggers_a_fetch_that_finds_the_rotated_key(
    old: SigningKey, new: SigningKey
) -> None:
    endpoint, clock = Endpoint(old), Clock()
    keys = cache(endpoint, clock)
    keys.key("old", "RS256")
    endpoint.keys.append(new)
    clock.now += 11
    assert keys.key("new", "ES256").algorithm_name == "ES256"
    assert endpoint.calls == 2


def test_unknown_kids_fetch_at_most_once_per_refresh_interval(old: SigningKey) -> None:
    endpoint, clock = Endpoint(old), Clock()
    keys = cache(endpoint, clock)
    keys.key("old", "RS256")
    for n in range(50):
        with pytest.raises(UnknownKey):
            keys.key(f"random-{n}", "RS256")
    assert endpoint.calls == 1
    clock.now += 10
    with pytest.raises(UnknownKey):
        keys.key("random", "RS256")
    assert endpoint.calls == 2


def test_when_the_endpoint_fails_cached_keys_keep_verifying(old: SigningKey) -> None:
    endpoint, clock = Endpoint(old), Clock()
    keys = cache(endpoint, clock)
    keys.key("old", "RS256")
    endpoint.error = ConnectionRefusedError("refused")
    clock.now += 10_000  # far past the cache time
    keys.key("old", "RS256")
    assert endpoint.calls == 2


def test_an_uncached_kid_during_an_outage_is_unavailable_with_a_retry_after(
    old: SigningKey,
) -> None:
    endpoint, clock = Endpoint(old), Clock()
    keys = cache(endpoint, clock)
    keys.key("old", "RS256")
    endpoint.error = TimeoutError("timed out")
    clock.now += 20
    with pytest.raises(KeysUnavailable) as raised:
        keys.key("new", "ES256")
    assert raised.value.retry_after == 10
    clock.now += 4  # rate-limited, and the last fetch failed: still unavailable, sooner
    with pytest.raises(KeysUnavailable) as raised:
        keys.key("new", "ES256")
    assert raised.value.retry_after == 6
    assert endpoint.calls == 2


def test_the_first_fetch_failing_is_unavailable(old: SigningKey) -> None:
    endpoint, clock = Endpoint(old), Clock()
    endpoint.error = ValueError("not JSON")
    with pytest.raises(KeysUnavailable):
        cache(endpoint, clock).key("old", "RS256")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"keys": {}}',
        b'{"keys": []}',
        b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}',
    ],
)
def test_a_broken_key_set_does_not_replace_the_cached_one(old: SigningKey, body: bytes) -> None:
    endpoint, clock = Endpoint(old), Clock()
    keys = cache(endpoint, clock)
    keys.key("old", "RS256")

    def broken() -> bytes:
        return body

    keys._fetch = broken
    clock.now += 400
    keys.key("old", "RS256")
    assert keys._last_error is not None


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
    endpoint = Endpoint(rsa)
    endpoint.keys = [rsa]
    keys = cache(endpoint, Clock())
    keys._fetch = lambda: json.dumps({"keys": [rsa.public_jwk(with_alg=False)]}).encode()
    assert keys.key("plain", "PS256").algorithm_name == "PS256"
    assert keys.key("plain", "RS256").algorithm_name == "RS256"


def test_a_token_without_kid_uses_the_only_key(old: SigningKey, new: SigningKey) -> None:
    assert cache(Endpoint(old), Clock()).key(None, "RS256").algorithm_name == "RS256"
    with pytest.raises(UnknownKey):
        cache(Endpoint(old, new), Clock()).key(None, "RS256")


def test_concurrent_unknown_kids_make_one_fetch(old: SigningKey, new: SigningKey) -> None:
    release = threading.Event()
    endpoint = Endpoint(old, new)

    def slow_fetch() -> bytes:
        release.wait(timeout=30)
        return endpoint()

    keys = JWKSCache(
        "https://idp.test/jwks", cache_time=300, refresh_interval=10, timeout=1, fetch=slow_fetch
    )
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(keys.key("new", "ES256"))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    release.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 8
    assert endpoint.calls == 1
