"""Bearer tokens (RFC 6750) as signed JWTs (RFC 7519), checked the RFC 8725 way.

The algorithm comes from an allow-list of asymmetric algorithms and must fit the key that the
``kid`` names (so ``none`` and "HS256 keyed with the public key" never verify); ``iss``, ``aud``
and ``exp`` are required and checked, ``nbf`` and ``iat`` when present, all with a small leeway.

A verified token is remembered, keyed by its SHA-256, until ``min(exp, now + max_cache_seconds)``:
the next request with the same token costs a hash and a dict lookup instead of a signature check
(an RS256 verification is most of a cache hit's budget otherwise). Expiry still holds, and when
the key set changes, a remembered token whose key is gone is checked again (so refused): a
withdrawn key stops working with the fetch that shows it gone, not a minute later.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import jwt

from service.auth.jwks import UnknownKey

# Remembered verified tokens per worker, and for how long at most.
TOKEN_CACHE_SIZE = 4096
TOKEN_CACHE_SECONDS = 60.0


class InvalidToken(Exception):
    """401 ``invalid_token``: the description is safe to send back (no token contents)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class InsufficientScope(Exception):
    """403 ``insufficient_scope``: a valid token without the scope this API needs."""

    def __init__(self, scope: str) -> None:
        super().__init__(f"the token does not grant the {scope} scope")
        self.scope = scope
        self.description = f"The token does not grant the {scope} scope."


class KeySource(Protocol):
    generation: int  # changes whenever the set of keys does

    def key(self, kid: str | None, alg: str) -> jwt.PyJWK: ...

    def publishes(self, kid: str | None) -> bool: ...


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for, and what it grants."""

    subject: str | None
    scopes: frozenset[str]
    expires_at: float


def scopes_of(claims: dict[str, Any]) -> frozenset[str]:
    """``scope`` as a space-separated string (RFC 8693 4.2, RFC 9068) and ``scp`` as a list or a
    string (Okta, Azure AD), united."""
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(item for item in value if isinstance(item, str))
    return frozenset(found)


class _Entry(NamedTuple):
    principal: Principal
    until: float
    kid: str | None  # the key that verified it, checked again when the key set changes
    generation: int


class VerifiedTokens:
    """A bounded, thread-safe LRU of verified tokens by SHA-256, each valid until its deadline."""

    def __init__(self, size: int = TOKEN_CACHE_SIZE) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()

    def get(self, digest: bytes, now: float) -> Principal | None:
        entry = self.entry(digest, now)
        return None if entry is None else entry.principal

    def entry(self, digest: bytes, now: float) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if now >= entry.until:
                del self._entries[digest]
                return None
            self._entries.move_to_end(digest)
            return entry

    def forget(self, digest: bytes) -> None:
        with self._lock:
            self._entries.pop(digest, None)

    def put(
        self,
        digest: bytes,
        principal: Principal,
        until: float,
        kid: str | None = None,
        generation: int = 0,
    ) -> None:
        with self._lock:
            self._entries[digest] = _Entry(principal, until, kid, generation)
            self._entries.move_to_end(digest)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class TokenVerifier:
    """Checks one bearer token: from the cache when it was verified recently, fully otherwise."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        keys: KeySource,
        algorithms: Collection[str],
        required_scope: str,
        leeway: float,
        max_cache_seconds: float = TOKEN_CACHE_SECONDS,
        cache_size: int = TOKEN_CACHE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.required_scope = required_scope
        self.keys = keys
        self._algorithms = frozenset(algorithms)
        self._leeway = leeway
        self._max_cache_seconds = max_cache_seconds
        self._clock = clock
        self.cache = VerifiedTokens(cache_size)
        self.signature_checks = 0  # full verifications, for tests and the bench

    def verify(self, token: str) -> Principal:
        """The token's principal if it is valid and grants the required scope.

        Raises InvalidToken, InsufficientScope, or (from the key source) KeysUnavailable.
        """
        digest = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        generation = self.keys.generation
        entry = self.cache.entry(digest, now)
        stale = entry is not None and entry.generation != generation
        if stale and entry is not None and not self.keys.publishes(entry.kid):
            self.cache.forget(digest)  # its key was withdrawn: check the token again
            entry = None
        if entry is None:
            principal, kid = self._verify(token, now)
            until = min(principal.expires_at, now + self._max_cache_seconds)
            self.cache.put(digest, principal, until, kid, generation)
        else:
            principal = entry.principal
        if self.required_scope and self.required_scope not in principal.scopes:
            raise InsufficientScope(self.required_scope)
        return principal

    def _verify(self, token: str, now: float) -> tuple[Principal, str | None]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise InvalidToken("The token is not a JWT.") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise InvalidToken("The token's signing algorithm is not accepted.")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("The token's kid is not a string.")
        if _expired_on_its_face(token, now - self._leeway):
            raise InvalidToken(_EXPIRED)
        try:
            key = self.keys.key(kid, alg)
        except UnknownKey:
            raise InvalidToken(
                "The token is signed with a key the issuer does not publish."
            ) from None
        self.signature_checks += 1
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(_describe(exc)) from None
        exp = claims["exp"]
        subject = claims.get("sub")
        principal = Principal(
            subject=subject if isinstance(subject, str) else None,
            scopes=scopes_of(claims),
            expires_at=float(exp),
        )
        return principal, kid


_EXPIRED = "The token has expired."


def _expired_on_its_face(token: str, cutoff: float) -> bool:
    """Whether the token's unverified ``exp`` is before ``cutoff``. Checked before its key is
    looked up: an expired token is refused as expired even while the identity provider is down
    (not a 503) and never costs a JWKS fetch. Unverified claims can only refuse here, never
    admit, so no signature is needed for it."""
    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.InvalidTokenError:
        return False  # the full check says what is wrong with it
    return isinstance(exp, int | float) and not isinstance(exp, bool) and exp < cutoff


# A short, fixed reason per failure for the WWW-Authenticate header and the problem detail;
# the first matching class wins (they subclass each other).
_REASONS: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
    (jwt.ExpiredSignatureError, _EXPIRED),
    (jwt.ImmatureSignatureError, "The token is not valid yet."),
    (jwt.InvalidIssuerError, "The token was issued by another issuer."),
    (jwt.InvalidAudienceError, "The token is meant for another audience."),
    (jwt.InvalidSignatureError, "The token's signature does not verify."),
)


def _describe(error: jwt.InvalidTokenError) -> str:
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"The token lacks the {error.claim} claim."
    for kind, reason in _REASONS:
        if isinstance(error, kind):
            return reason
    return "The token is malformed or its claims are invalid."
