"""The identity provider's signing keys: fetched from its JWKS URL, cached, refreshed on rotation.

Keys are used for ``cache_time`` seconds, then fetched again in the background of one request
(the others keep using the cached set). A token naming a ``kid`` the cache does not hold triggers
a fetch at once, since that is how a key rotation shows; but never more than one fetch per
``refresh_interval``, so tokens with made-up key ids cannot turn every request into a call to the
identity provider. PyJWT's ``PyJWKClient`` refetches on every unknown kid with no such limit,
which is why this is written here; PyJWT still parses every key.

When the endpoint fails (down, slow, an error status, a body that is no key set) the cached keys
keep verifying tokens however old they are: an IdP outage must not log everyone out. A ``kid``
that is not cached cannot be checked then, so it is refused with ``KeysUnavailable`` (the API
answers 503 with Retry-After): fail closed, never accept an unverifiable token.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jwt import PyJWK
from jwt.exceptions import PyJWKError

from service.observability.logging import get_logger

# A key set is a few kilobytes; a bigger body is a misconfigured URL or an attack on memory.
JWKS_MAX_BYTES = 1 << 20
_log = get_logger("service.auth")

# Which key type (and curve) each allowed JWS algorithm verifies with (RFC 7518 3.1, RFC 8037).
_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_SIGNING_KTY = frozenset(("RSA", "EC", "OKP"))

Fetch = Callable[[], bytes]


class UnknownKey(Exception):
    """The current key set has no key this token can be checked with."""


class KeysUnavailable(Exception):
    """The key this token needs is not cached and the JWKS endpoint cannot be read now."""

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = max(1, math.ceil(retry_after))


@dataclass
class _KeySet:
    jwks: Mapping[str | None, Mapping[str, Any]]
    fetched_at: float
    # PyJWK objects per (kid, alg), built on first use: parsing an RSA key costs tens of us.
    built: dict[tuple[str | None, str], PyJWK] = field(default_factory=dict)

    def find(self, kid: str | None) -> Mapping[str, Any] | None:
        if kid is None and len(self.jwks) == 1:
            # RFC 7515 makes kid optional; with one key in the set there is no ambiguity.
            return next(iter(self.jwks.values()))
        return self.jwks.get(kid)


def parse_jwks(body: bytes) -> dict[str | None, Mapping[str, Any]]:
    """The signature-verification keys of a JWKS document (RFC 7517 5), by kid.

    Encryption keys, symmetric (``oct``) keys and unknown key types are skipped: the service only
    verifies signatures, and never with a shared secret. No usable key at all is an error, so a
    broken response cannot wipe the cached keys.
    """
    document = json.loads(body)
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError('the JWKS is not a JSON object with a "keys" list')
    keys: dict[str | None, Mapping[str, Any]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") not in _SIGNING_KTY:
            continue
        if entry.get("use", "sig") != "sig":
            continue
        ops = entry.get("key_ops")
        if isinstance(ops, list) and "verify" not in ops:
            continue
        kid = entry.get("kid")
        if kid is not None and not isinstance(kid, str):
            continue
        keys.setdefault(kid, entry)
    if not keys:
        raise ValueError("the JWKS holds no signature verification key (RSA, EC or OKP)")
    return keys


def fits(jwk: Mapping[str, Any], alg: str) -> bool:
    """Whether ``jwk`` can verify ``alg`` signatures; a key that names its ``alg`` only that one
    (RFC 8725 3.1: the algorithm comes from the key, not from the attacker's header)."""
    if jwk.get("alg", alg) != alg:
        return False
    kty = jwk.get("kty")
    if alg.startswith(("RS", "PS")):
        return kty == "RSA"
    if alg == "EdDSA":
        return kty == "OKP" and jwk.get("crv") in ("Ed25519", "Ed448")
    return kty == "EC" and jwk.get("crv") == _CURVES.get(alg)


def http_fetch(url: str, timeout: float) -> Fetch:
    """GET the key set: a bounded body, a timeout, any non-2xx status an error."""

    def fetch() -> bytes:
        request = urllib.request.Request(  # noqa: S310 - the setting only takes http(s) URLs
            url,
            headers={
                "Accept": "application/jwk-set+json, application/json",
                "User-Agent": "orders-service",
            },
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body: bytes = response.read(JWKS_MAX_BYTES + 1)
        if len(body) > JWKS_MAX_BYTES:
            raise ValueError(f"the JWKS is larger than {JWKS_MAX_BYTES} bytes")
        return body

    return fetch


class JWKSCache:
    """The key set of one JWKS URL, shared by a worker's threads."""

    def __init__(
        self,
        url: str,
        *,
        cache_time: float,
        refresh_interval: float,
        timeout: float,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._cache_time = cache_time
        self._refresh_interval = refresh_interval
        self._fetch = fetch or http_fetch(url, timeout)
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: _KeySet | None = None
        self._last_attempt: float | None = None
        self._last_error: str | None = None
        self.fetches = 0  # attempts, for tests and the bench

    def key(self, kid: str | None, alg: str) -> PyJWK:
        """The key that verifies a token with this ``kid`` and ``alg``.

        Raises UnknownKey (the token is invalid) or KeysUnavailable (it cannot be checked now).
        """
        keys = self._keys
        now = self._clock()
        if keys is None or keys.find(kid) is None:
            keys = self._refresh(kid, wait=True)
        elif now - keys.fetched_at >= self._cache_time:
            keys = self._refresh(kid, wait=False)
        jwk = keys.find(kid)
        if jwk is None:
            raise UnknownKey(f"no key in the identity provider's key set has kid {kid!r}")
        if not fits(jwk, alg):
            raise UnknownKey(f"the key {kid!r} does not verify {alg} signatures")
        built = keys.built.get((kid, alg))
        if built is None:
            try:
                built = keys.built[(kid, alg)] = PyJWK(dict(jwk), algorithm=alg)
            except PyJWKError as exc:
                raise UnknownKey(f"the key {kid!r} cannot be used: {exc}") from None
        return built

    def _refresh(self, kid: str | None, *, wait: bool) -> _KeySet:
        """Fetch the set again, unless another thread just did or the rate limit says no.

        ``wait=False`` (the cached set is only old): if another thread is fetching already, keep
        using the cached set rather than queueing behind it.
        """
        if not self._lock.acquire(blocking=wait):
            assert self._keys is not None
            return self._keys
        try:
            now = self._clock()
            keys = self._keys
            fresh = keys is not None and now - keys.fetched_at < self._cache_time
            if fresh and keys is not None and keys.find(kid) is not None:
                return keys  # another thread refreshed while this one waited
            since = None if self._last_attempt is None else now - self._last_attempt
            if since is not None and since < self._refresh_interval:
                return self._known_or_unavailable(keys, kid, self._refresh_interval - since)
            self._last_attempt = now
            self.fetches += 1
            try:
                parsed = parse_jwks(self._fetch())
            except Exception as exc:  # noqa: BLE001 - any fetch failure is an IdP outage, not a 500
                self._last_error = f"{type(exc).__name__}: {exc}"
                _log.warning(
                    "JWKS fetch failed; cached keys stay in use",
                    jwks_url=self.url,
                    error=self._last_error,
                    cached_keys=0 if keys is None else len(keys.jwks),
                )
                return self._known_or_unavailable(keys, kid, self._refresh_interval)
            self._last_error = None
            self._keys = _KeySet(parsed, fetched_at=now)
            return self._keys
        finally:
            self._lock.release()

    def _known_or_unavailable(
        self, keys: _KeySet | None, kid: str | None, retry_after: float
    ) -> _KeySet:
        """No fetch now: the cached set if it can answer for ``kid``, else why it cannot."""
        if keys is not None and (keys.find(kid) is not None or self._last_error is None):
            return keys  # a stale key still verifies; a fresh set without the kid says no
        raise KeysUnavailable(
            f"the identity provider's keys cannot be fetched ({self._last_error})", retry_after
        )
