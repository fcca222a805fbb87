"""The identity provider's signing keys: fetched from its JWKS URL in the background, cached.

No request thread ever waits for the identity provider (a key set served a byte a second once
held every thread for 42 s). One daemon thread per worker fetches: at start, when the set is
``cache_time`` seconds old (the cached set keeps verifying meanwhile), and when a token names a
``kid`` the set lacks, never more than once per ``refresh_interval``, so tokens with made-up key
ids cannot hammer the identity provider. A whole fetch has one deadline (service.auth.fetch).

A ``kid`` the set lacks is refused outright (``UnknownKey``: 401) only once a fetch that began
after the kid was first seen has come back without it; until then the token may be good (a key
published seconds after the last fetch) and gets ``KeysUnavailable`` (503 with Retry-After).
A key withdrawn from the set stops verifying with the fetch that shows it gone, so within
``cache_time`` plus one fetch's deadline. When the endpoint fails (down, slow, an error status, a
body that is no key set) the cached keys keep verifying however old they are: an IdP outage must
not log everyone out. A key that cannot be parsed is left out of the set with a log line.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jwt import PyJWK

from service.auth.fetch import JWKS_MAX_BYTES, Fetch, http_fetch
from service.observability.logging import get_logger

__all__ = ["JWKS_MAX_BYTES", "JWKSCache", "KeysUnavailable", "UnknownKey", "http_fetch"]
_log = get_logger("service.auth")
# Kids seen in tokens but not in the set, remembered to tell "not fetched since" from "absent".
UNKNOWN_KIDS_KEPT = 4096

# Which key type (and curve) each allowed JWS algorithm verifies with (RFC 7518 3.1, RFC 8037).
_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_SIGNING_KTY = frozenset(("RSA", "EC", "OKP"))


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


def usable_keys(
    jwks: Mapping[str | None, Mapping[str, Any]],
) -> dict[str | None, Mapping[str, Any]]:
    """The keys PyJWT can build; each one it cannot is left out with a log line (a 500 before)."""
    kept: dict[str | None, Mapping[str, Any]] = {}
    for kid, jwk in jwks.items():
        try:
            PyJWK(dict(jwk))
        except Exception as exc:  # noqa: BLE001 - PyJWT raises several types for a bad key
            _log.warning("JWKS key ignored: it cannot be parsed", kid=kid, error=type(exc).__name__)
            continue
        kept[kid] = jwk
    if not kept:
        raise ValueError("the JWKS holds no key that can be parsed")
    return kept


class JWKSCache:
    """The key set of one JWKS URL, shared by a worker's threads, fetched by a background thread
    (``background=False``: the caller runs due fetches with ``run_pending``, as tests do)."""

    def __init__(
        self,
        url: str,
        *,
        cache_time: float,
        refresh_interval: float,
        timeout: float,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.monotonic,
        background: bool = True,
    ) -> None:
        self.url = url
        self._cache_time = cache_time
        self._refresh_interval = refresh_interval
        self._timeout = timeout
        self._fetch = fetch or http_fetch(url, timeout)
        self._clock = clock
        self._background = background
        self._wake = threading.Condition()
        self._keys: _KeySet | None = None
        self._due: float | None = None  # when the next fetch should start, if one is wanted
        self._running_since: float | None = None
        self._last_attempt: float | None = None
        self._last_error: str | None = None
        # kid -> when a token first named it while the set lacked it (bounded, oldest dropped)
        self._unknown: OrderedDict[str | None, float] = OrderedDict()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.generation = 0  # bumped by every fetch that replaces the set
        self.fetches = 0  # attempts, for tests and the bench

    # ---- request threads: never wait for the identity provider ---------------------------

    def key(self, kid: str | None, alg: str) -> PyJWK:
        """The key that verifies a token with this ``kid`` and ``alg``.

        Raises UnknownKey (the token is invalid) or KeysUnavailable (it cannot be checked now).
        """
        keys = self._keys
        jwk = None if keys is None else keys.find(kid)
        if keys is None or jwk is None:
            raise self._unknown_kid(kid)
        if self._clock() - keys.fetched_at >= self._cache_time:
            with self._wake:
                self._want_fetch()
        if not fits(jwk, alg):
            raise UnknownKey(f"the key {kid!r} does not verify {alg} signatures")
        built = keys.built.get((kid, alg))
        if built is None:
            try:
                built = keys.built[(kid, alg)] = PyJWK(dict(jwk), algorithm=alg)
            except Exception as exc:  # noqa: BLE001 - any key PyJWT cannot build is no key
                raise UnknownKey(f"the key {kid!r} cannot be used: {type(exc).__name__}") from None
        return built

    def publishes(self, kid: str | None) -> bool:
        """Whether the current set holds ``kid`` (a verified token's key still stands)."""
        keys = self._keys
        return keys is not None and keys.find(kid) is not None

    def _unknown_kid(self, kid: str | None) -> Exception:
        """Why a kid the set lacks is refused: for good, or until a fetch that may bring it."""
        with self._wake:
            now = self._clock()
            keys = self._keys
            if keys is not None and keys.find(kid) is not None:
                return KeysUnavailable("the key set just changed", 1)  # a fetch landed meanwhile
            first_seen = self._unknown.setdefault(kid, now)
            self._unknown.move_to_end(kid)
            while len(self._unknown) > UNKNOWN_KIDS_KEPT:
                self._unknown.popitem(last=False)
            if keys is not None and keys.fetched_at >= first_seen:
                return UnknownKey(f"no key in the identity provider's key set has kid {kid!r}")
            starts = self._want_fetch()
            wait = self._timeout + max(0.0, starts - now)
        if self._last_error is not None:
            reason = f"the identity provider's keys cannot be fetched ({self._last_error})"
        else:
            reason = "the identity provider's keys are being fetched"
        return KeysUnavailable(reason, wait)

    def _want_fetch(self) -> float:
        """Ask for a fetch as soon as the rate limit allows (caller holds ``_wake``); when the
        running or next fetch starts."""
        if self._running_since is not None:
            return self._running_since
        now = self._clock()
        earliest = now
        if self._last_attempt is not None:
            earliest = max(now, self._last_attempt + self._refresh_interval)
        if self._due is None or earliest < self._due:
            self._due = earliest
            self._wake.notify()
        return self._due

    # ---- the fetching side -----------------------------------------------------------------

    def start(self) -> None:
        """Fetch the set now, in the background (a worker calls this when it starts)."""
        with self._wake:
            self._want_fetch()
            if self._background and self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, name="jwks", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout + 1)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and (self._due is None or self._due > self._clock()):
                    wait = None if self._due is None else self._due - self._clock()
                    self._wake.wait(wait)
                if self._stopped:
                    return
            self.run_pending()

    def run_pending(self) -> bool:
        """Run the fetch that is due, in this thread; whether there was one."""
        with self._wake:
            now = self._clock()
            if self._due is None or self._due > now or self._running_since is not None:
                return False
            self._due = None
            self._running_since = self._last_attempt = now
            self.fetches += 1
        try:
            published = parse_jwks(self._fetch())
            parsed = usable_keys(published)
        except Exception as exc:  # noqa: BLE001 - any fetch failure is an IdP outage, not a 500
            with self._wake:
                self._running_since = None
                self._last_error = f"{type(exc).__name__}: {exc}"
                self._next_fetch(now + self._refresh_interval)  # try again, unasked
            _log.warning(
                "JWKS fetch failed; cached keys stay in use",
                jwks_url=self.url,
                error=self._last_error,
                cached_keys=0 if self._keys is None else len(self._keys.jwks),
            )
            return True
        with self._wake:
            before = set() if self._keys is None else set(self._keys.jwks)
            for kid in (before | set(published)) - set(parsed):
                self._unknown[kid] = now  # withdrawn or unusable: 401 at once, not 503
            self._keys = _KeySet(parsed, fetched_at=now)
            self.generation += 1
            self._running_since = None
            self._last_error = None
            # Again when this set is cache_time old, asked or not: a withdrawn key must stop
            # verifying even for tokens the verifier answers from its own cache.
            self._next_fetch(now + self._cache_time)
        return True

    def _next_fetch(self, at: float) -> None:
        """Fetch at ``at`` unless one is wanted sooner (caller holds ``_wake``)."""
        if self._due is None or at < self._due:
            self._due = at
            self._wake.notify()
