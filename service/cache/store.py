"""Redis access for the cache: short timeouts, no retries, a circuit breaker, and leases.

Every call either answers within ``ORDERS_CACHE_TIMEOUT`` or raises ``CacheUnavailable``, which the
caller treats as a miss: Redis is an optimisation, never a reason to fail a request.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.breaker import CircuitBreaker
from service.cache import keys as scripts
from service.cache.entries import PageEntry, TotalsEntry
from service.cache.keys import CacheKeys, Invalidation
from service.config import RedisURL
from service.observability import metrics

T = TypeVar("T")
LEASE_MS = 3000  # longer than any fill (MySQL timeouts are below one second)


class CacheUnavailable(Exception):
    """Redis failed, timed out, or the breaker is open. Callers fall back to MySQL."""


def redis_client(url: RedisURL, timeout: float | None, **options: Any) -> redis.Redis:
    """A client that gives up after ``timeout`` seconds and never retries on its own."""
    return redis.Redis.from_url(
        url.url,
        password=url.password or None,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=0,
        **options,
    )


class RedisCache:
    """The cache's Redis operations, each one round trip, guarded by the breaker."""

    def __init__(
        self, client: redis.Redis, keys: CacheKeys, breaker: CircuitBreaker, *, hard_ttl: int
    ) -> None:
        self.keys = keys
        self.client = client
        self.breaker = breaker
        self.hard_ttl = hard_ttl  # seconds an entry lives: fresh for the TTL, then stale
        self._lease = self.client.register_script(scripts.LEASE)
        self._fill = self.client.register_script(scripts.FILL)
        self._invalidate = self.client.register_script(scripts.INVALIDATE)

    def _call(self, command: str, operation: Callable[[], T]) -> T:
        if not self.breaker.allow():
            raise CacheUnavailable("circuit open")
        started = time.perf_counter()
        try:
            result = operation()
        except Exception as exc:  # noqa: BLE001 - redis-py raises more than RedisError on bad replies
            metrics.observe_redis_call(command, time.perf_counter() - started, ok=False)
            self.breaker.failure()
            raise CacheUnavailable(f"{type(exc).__name__}: {exc}") from None
        metrics.observe_redis_call(command, time.perf_counter() - started, ok=True)
        self.breaker.success()
        return result

    def read(self, page: int) -> tuple[PageEntry | None, TotalsEntry | None]:
        """The page's entry and the totals, in one round trip."""
        raw_page, raw_totals = self._call(
            "mget", lambda: self.client.mget(self.keys.page(page), self.keys.totals)
        )
        return (
            PageEntry.decode(cast(bytes, raw_page)) if raw_page else None,
            TotalsEntry.decode(cast(bytes, raw_totals)) if raw_totals else None,
        )

    def lease_page(self, page: int) -> str | None:
        return self._take_lease(self.keys.lease(page), str(page))

    def lease_totals(self) -> str | None:
        return self._take_lease(self.keys.totals_lease, "")

    def _take_lease(self, lease_key: str, index_member: str) -> str | None:
        token = secrets.token_hex(8)
        taken = self._call(
            "lease",
            lambda: self._lease(
                keys=[lease_key, self.keys.index], args=[token, LEASE_MS, index_member]
            ),
        )
        return token if taken else None

    def fill_page(self, page: int, token: str, entry: PageEntry) -> bool:
        """Store the page if our lease is still live (no invalidation since we took it)."""
        return self._fill_if_leased(self.keys.lease(page), self.keys.page(page), token, entry)

    def fill_totals(self, token: str, entry: TotalsEntry) -> bool:
        return self._fill_if_leased(self.keys.totals_lease, self.keys.totals, token, entry)

    def _fill_if_leased(
        self, lease_key: str, key: str, token: str, entry: PageEntry | TotalsEntry
    ) -> bool:
        stored = self._call(
            "fill",
            lambda: self._fill(keys=[lease_key, key], args=[token, entry.encode(), self.hard_ttl]),
        )
        return bool(stored)

    def invalidate(self, change: Invalidation) -> None:
        """Apply one invalidation step atomically (the INVALIDATE script)."""
        args = change.script_args(self.keys.base, self.hard_ttl)
        self._call("invalidate", lambda: self._invalidate(keys=[], args=args))

    def stored_position(self) -> str | None:
        raw = self._call("get", lambda: self.client.get(self.keys.binlog_position))
        return cast(bytes, raw).decode() if raw else None

    def ping(self) -> None:
        """Readiness: one PING, through the breaker like every other call."""
        self._call("ping", self.client.ping)
