"""Token verification as pure logic: real keys and signatures, an in-memory key source, a clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from service.auth.jwks import KeysUnavailable, UnknownKey, fits
from service.auth.tokens import (
    InsufficientScope,
    InvalidToken,
    Principal,
    TokenVerifier,
    VerifiedTokens,
    scopes_of,
)
from service.config import AUTH_ALGORITHMS
from tests.support.tokens import (
    AUDIENCE,
    ISSUER,
    SigningKey,
    claims,
    hmac_with_public_key,
    unsigned_token,
)


class StaticKeys:
    """The key source, minus HTTP: the public JWKs of ``keys``, checked with the real ``fits``."""

    def __init__(self, *keys: SigningKey) -> None:
        self.jwks = {key.kid: key.public_jwk() for key in keys}
        self.generation = 1  # bumped by a test that withdraws a key

    def publishes(self, kid: str | None) -> bool:
        return kid in self.jwks

    def key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        jwk = self.jwks.get(kid) if kid is not None else None
        if jwk is None or not fits(jwk, alg):
            raise UnknownKey(str(kid))
        return jwt.PyJWK(jwk, algorithm=alg)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {alg: SigningKey.generate(alg) for alg in ("RS256", "PS256", "ES256", "EdDSA")}


def verifier(*keys: SigningKey, clock: Any = time.time, **options: Any) -> TokenVerifier:
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "keys": StaticKeys(*keys),
        "algorithms": AUTH_ALGORITHMS,
        "required_scope": "orders:read",
        "leeway": 30,
        "clock": clock,
        **options,
    }
    return TokenVerifier(**values)


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "EdDSA"])
def test_every_default_algorithm_family_verifies(keys: dict[str, SigningKey], alg: str) -> None:
    principal = verifier(keys[alg]).verify(keys[alg].sign(claims()))
    assert principal.subject == "user-42"
    assert "orders:read" in principal.scopes


def test_scopes_come_from_scope_and_scp() -> None:
    assert scopes_of({"scope": "a b  c"}) == {"a", "b", "c"}
    assert scopes_of({"scp": ["a", "b", 3]}) == {"a", "b"}
    assert scopes_of({"scp": "a b", "scope": "c"}) == {"a", "b", "c"}
    assert scopes_of({"scope": 7}) == frozenset()


@pytest.mark.parametrize(
    ("make_claims", "reason"),
    [
        (lambda: claims(lifetime=-120), "expired"),
        (lambda: claims(nbf=int(time.time()) + 600), "not valid yet"),
        (lambda: claims(iat=int(time.time()) + 600), "not valid yet"),
        (lambda: claims(issuer="https://evil.test/"), "another issuer"),
        (lambda: claims(audience="someone-else"), "another audience"),
        (lambda: claims(audience=["someone-else", AUDIENCE]), None),
        (lambda: claims(exp=None), "lacks the exp claim"),
        (lambda: claims(iss=None), "lacks the iss claim"),
        (lambda: claims(aud=None), "lacks the aud claim"),
        (lambda: claims(exp="tomorrow"), "malformed"),
    ],
)
def test_claims_are_checked(
    keys: dict[str, SigningKey],
    make_claims: Callable[[], dict[str, Any]],
    reason: str | None,
) -> None:
    token = keys["RS256"].sign(make_claims())  # made now, not at collection (they would age)
    if reason is None:
        verifier(keys["RS256"]).verify(token)
        return
    with pytest.raises(InvalidToken, match=reason):
        verifier(keys["RS256"]).verify(token)


def test_the_leeway_is_a_setting(keys: dict[str, SigningKey]) -> None:
    token = keys["RS256"].sign(claims(lifetime=-5))
    verifier(keys["RS256"], leeway=30).verify(token)
    with pytest.raises(InvalidToken, match="expired"):
        verifier(keys["RS256"], leeway=0).verify(token)


@pytest.mark.parametrize(
    "forge",
    [
        lambda key: unsigned_token(claims(), key.kid),
        lambda key: hmac_with_public_key(key, claims()),
        lambda key: SigningKey.generate("RS256", kid=key.kid).sign(claims()),
        lambda key: key.sign(claims())[:-4] + "AAAA",
    ],
    ids=["alg-none", "hs256-with-the-public-key", "another-key-same-kid", "tampered-signature"],
)
def test_forgeries_are_refused(keys: dict[str, SigningKey], forge: Any) -> None:
    with pytest.raises(InvalidToken):
        verifier(keys["RS256"]).verify(forge(keys["RS256"]))


def test_hs256_with_the_public_key_fails_even_if_someone_allowed_hmac(
    keys: dict[str, SigningKey],
) -> None:
    """Defence in depth: the key decides the algorithm family, not the header (RFC 8725 3.1)."""
    token = hmac_with_public_key(keys["RS256"], claims())
    with pytest.raises(InvalidToken):
        verifier(keys["RS256"], algorithms=[*AUTH_ALGORITHMS, "HS256"]).verify(token)


def test_an_algorithm_outside_the_allow_list_is_refused(keys: dict[str, SigningKey]) -> None:
    with pytest.raises(InvalidToken, match="algorithm"):
        verifier(keys["RS256"], algorithms=["ES256"]).verify(keys["RS256"].sign(claims()))


def test_a_key_is_used_only_for_its_own_algorithm(keys: dict[str, SigningKey]) -> None:
    """An RSA key published with alg RS256 does not verify the same key's PS256 signature."""
    rs = keys["RS256"]
    as_ps = SigningKey(rs.kid, "PS256", rs.private)
    with pytest.raises(InvalidToken):
        verifier(rs).verify(as_ps.sign(claims()))
    es_header_on_rsa = jwt.encode(claims(), keys["ES256"].private, "ES256", headers={"kid": rs.kid})
    with pytest.raises(InvalidToken):
        verifier(rs).verify(es_header_on_rsa)


def test_a_token_without_the_scope_is_insufficient(keys: dict[str, SigningKey]) -> None:
    with pytest.raises(InsufficientScope) as raised:
        verifier(keys["RS256"]).verify(keys["RS256"].sign(claims(scope="orders:write")))
    assert raised.value.scope == "orders:read"
    verifier(keys["RS256"], required_scope="").verify(keys["RS256"].sign(claims(scope=None)))


def test_a_verified_token_is_not_verified_again(keys: dict[str, SigningKey]) -> None:
    check = verifier(keys["RS256"])
    token = keys["RS256"].sign(claims())
    for _ in range(5):
        check.verify(token)
    assert check.signature_checks == 1


def test_a_cached_token_is_refused_once_its_key_is_withdrawn(keys: dict[str, SigningKey]) -> None:
    """The token cache does not outlive the key set: a withdrawn key stops working with the
    fetch that shows it gone, not up to a minute later."""
    source = StaticKeys(keys["RS256"])
    check = verifier(keys["RS256"], keys=source)
    token = keys["RS256"].sign(claims())
    check.verify(token)
    del source.jwks[keys["RS256"].kid]
    source.generation += 1
    with pytest.raises(InvalidToken):
        check.verify(token)


def test_the_cache_still_enforces_the_scope(keys: dict[str, SigningKey]) -> None:
    check = verifier(keys["RS256"])
    token = keys["RS256"].sign(claims(scope="profile"))
    for _ in range(3):
        with pytest.raises(InsufficientScope):
            check.verify(token)
    assert check.signature_checks == 1


def test_a_cached_token_expires_at_its_exp(keys: dict[str, SigningKey]) -> None:
    clock = Clock()
    check = verifier(keys["RS256"], clock=clock, max_cache_seconds=3600)
    token = keys["RS256"].sign(claims(lifetime=100))
    check.verify(token)
    clock.now += 99
    check.verify(token)
    assert check.signature_checks == 1
    clock.now += 2  # past exp: verified again (here PyJWT's real clock still accepts it)
    check.verify(token)
    assert check.signature_checks == 2


def test_a_cached_token_is_checked_again_after_the_short_bound(keys: dict[str, SigningKey]) -> None:
    clock = Clock()
    check = verifier(keys["RS256"], clock=clock, max_cache_seconds=60)
    token = keys["RS256"].sign(claims(lifetime=3600))
    check.verify(token)
    clock.now += 61
    check.verify(token)
    assert check.signature_checks == 2


def test_an_expired_token_is_refused_once_the_cache_lets_go(keys: dict[str, SigningKey]) -> None:
    """The real expiry path: a token that expires while cached is refused after exp."""
    check = verifier(keys["RS256"], leeway=0)
    token = keys["RS256"].sign(claims(lifetime=1))
    check.verify(token)
    deadline = time.monotonic() + 30
    refusal: InvalidToken | None = None
    while refusal is None:  # wait for the real clock to pass exp (PyJWT reads it itself)
        try:
            check.verify(token)
        except InvalidToken as exc:
            refusal = exc
        assert time.monotonic() < deadline, "the token never expired"
        time.sleep(0.05)
    assert "expired" in refusal.description
    assert check.signature_checks == 1  # refused on its exp, before any key or signature


def test_refused_tokens_are_not_cached(keys: dict[str, SigningKey]) -> None:
    check = verifier(keys["RS256"])
    token = keys["RS256"].sign(claims(audience="other"))
    for _ in range(2):
        with pytest.raises(InvalidToken):
            check.verify(token)
    assert len(check.cache) == 0


def test_the_verified_token_cache_is_bounded_lru() -> None:
    cache = VerifiedTokens(size=2)
    who = Principal("x", frozenset(), 1e12)
    cache.put(b"a", who, 1e12)
    cache.put(b"b", who, 1e12)
    assert cache.get(b"a", 0) is who  # a is now the most recent
    cache.put(b"c", who, 1e12)
    assert len(cache) == 2
    assert cache.get(b"b", 0) is None
    assert cache.get(b"a", 0) is who
    assert cache.get(b"c", 1e12) is None  # at its deadline: gone


def test_the_cache_is_safe_under_threads(keys: dict[str, SigningKey]) -> None:
    check = verifier(keys["ES256"], cache_size=8)
    tokens = [keys["ES256"].sign(claims(sub=f"user-{n}")) for n in range(16)]
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def hammer() -> None:
        start.wait()
        try:
            for _ in range(20):
                for token in tokens:
                    check.verify(token)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert len(check.cache) <= 8


@pytest.mark.parametrize(
    "header",
    [{"crit": ["exp-ext"], "exp-ext": 1}, {"crit": ["b64"], "b64": True}],
    ids=["unknown-crit", "b64"],
)
def test_critical_header_extensions_are_refused(
    keys: dict[str, SigningKey], header: dict[str, Any]
) -> None:
    """RFC 7515 4.1.11; PyJWT does this, pinned here so an upgrade that stops cannot go unseen."""
    token = keys["RS256"].sign(claims(), **header)
    with pytest.raises(InvalidToken):
        verifier(keys["RS256"]).verify(token)


class UnreachableKeys(StaticKeys):
    """A key source whose identity provider is down: any key it does not hold is unavailable."""

    def key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        if kid not in self.jwks:
            raise KeysUnavailable("the identity provider did not answer", retry_after=5)
        return super().key(kid, alg)


def test_an_expired_token_is_refused_as_expired_without_asking_for_its_key(
    keys: dict[str, SigningKey],
) -> None:
    """An expired token is a 401 whatever its ``kid``: with the identity provider down it used to
    be a 503 (the key lookup ran first), and with it up it cost a JWKS fetch. Refusing on the
    unverified ``exp`` can only refuse, never admit, so it needs no signature."""
    stranger = SigningKey.generate("RS256")
    check = verifier(keys["RS256"], keys=UnreachableKeys(keys["RS256"]), leeway=30)
    expired = claims(lifetime=1)
    expired["exp"] = int(time.time()) - 120
    with pytest.raises(InvalidToken, match="expired"):
        check.verify(stranger.sign(expired))
    assert check.signature_checks == 0
    with pytest.raises(KeysUnavailable):  # a live token with an unknown kid still needs the keys
        check.verify(stranger.sign(claims()))
