"""Cache-aside reads of one page: near cache, then Redis, then MySQL under a lease.

The order of a read, and what each failure turns into:

1. The worker's near cache, if its invalidation feed is live: a hit costs no network call.
2. Redis: the page entry and the totals in one MGET. Redis down or slow counts as a miss.
3. What is missing or past its freshness is loaded from MySQL by the one request holding the
   lease (single flight). Others wait up to ``ORDERS_CACHE_LOCK_WAIT`` for it, or serve the
   previous copy marked stale. The fill is stored only if the lease survived (no stale set).
4. MySQL failing: a copy within ``ORDERS_CACHE_MAX_STALE`` of its freshness is served marked
   stale; otherwise ``DatabaseUnavailable`` (a 503 with Retry-After).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import TypeVar

from service.cache.entries import PageEntry, TotalsEntry, fresh_until
from service.cache.near import NearCache
from service.cache.outcomes import CacheOutcome
from service.cache.store import CacheUnavailable, RedisCache
from service.observability import tracing
from service.orders.database import DatabaseUnavailable
from service.orders.pagination import total_pages

E = TypeVar("E", PageEntry, TotalsEntry)

HIT, MISS, STALE = CacheOutcome.HIT, CacheOutcome.MISS, CacheOutcome.STALE
_POLL_SECONDS = 0.005


class PageNotFound(Exception):
    """The page is past the last one."""

    def __init__(self, page: int, total_pages: int) -> None:
        super().__init__(page, total_pages)
        self.page = page
        self.total_pages = total_pages


@dataclass(frozen=True, slots=True)
class CachedPage:
    """A page ready to render, and where it came from."""

    number: int
    entry: PageEntry
    total_orders: int
    outcome: CacheOutcome


class PageCache:
    """Serves pages through the cache. The loaders are the only way it reaches MySQL."""

    def __init__(
        self,
        redis_cache: RedisCache,
        near: NearCache | None,
        *,
        load_page: Callable[[int], bytes],
        load_total: Callable[[], int],
        page_size: int,
        ttl: int,
        lock_wait: float,
    ) -> None:
        self.redis = redis_cache
        self.near = near
        self._load_page = load_page
        self._load_total = load_total
        self.page_size = page_size
        self._ttl = ttl
        self._lock_wait = lock_wait

    def get(self, number: int) -> CachedPage:
        """The page, from the nearest place that has it fresh. Raises ``PageNotFound`` or
        ``DatabaseUnavailable``."""
        now_ms = int(time.time() * 1000)
        near = self.near
        version = -1
        if near is not None and near.live():
            version = near.version
            entry, totals = near.get(number)
            if (
                entry is not None
                and totals is not None
                and entry.fresh_until_ms > now_ms
                and totals.fresh_until_ms > now_ms
            ):
                return CachedPage(number, entry, totals.total_orders, HIT)
        return self._get_from_redis(number, now_ms, version)

    def _get_from_redis(self, number: int, now_ms: int, near_version: int) -> CachedPage:
        redis_ok = True
        unavailable_outcome = MISS
        try:
            with tracing.span("cache.lookup", page=number):
                entry, totals = self.redis.read(number)
        except CacheUnavailable:
            entry = totals = None
            redis_ok = False
            unavailable_outcome = (
                CacheOutcome.ERROR if self.redis.breaker.is_closed else CacheOutcome.BYPASS
            )
        if redis_ok and self.near is not None and near_version >= 0:
            self.near.store(number, _fresh(entry, now_ms), _fresh(totals, now_ms), near_version)

        totals, totals_outcome = self._resolve(
            totals,
            now_ms,
            redis_ok,
            lease=self.redis.lease_totals,
            reread=lambda: self.redis.read(number)[1],
            load=lambda: TotalsEntry(self._fresh_until(now_ms), self._load_total()),
            fill=self.redis.fill_totals,
        )
        pages = total_pages(totals.total_orders, self.page_size)
        if number > pages:
            raise PageNotFound(number, pages)

        entry, page_outcome = self._resolve(
            entry,
            now_ms,
            redis_ok,
            lease=lambda: self.redis.lease_page(number),
            reread=lambda: self.redis.read(number)[0],
            load=lambda: PageEntry.build(self._load_page(number), self._fresh_until(now_ms)),
            fill=lambda token, e: self.redis.fill_page(number, token, e),
        )
        if STALE in (page_outcome, totals_outcome):
            outcome = STALE
        elif not redis_ok:
            outcome = unavailable_outcome
        else:
            outcome = page_outcome
        return CachedPage(number, entry, totals.total_orders, outcome)

    def _fresh_until(self, now_ms: int) -> int:
        return fresh_until(now_ms, self._ttl)

    def _resolve(
        self,
        cached: E | None,
        now_ms: int,
        redis_ok: bool,
        *,
        lease: Callable[[], str | None],
        reread: Callable[[], E | None],
        load: Callable[[], E],
        fill: Callable[[str, E], bool],
    ) -> tuple[E, CacheOutcome]:
        """A fresh entry from the cache, or one loaded under the lease (single flight)."""
        if cached is not None and cached.fresh_until_ms > now_ms:
            return cached, HIT
        token = None
        if redis_ok:
            try:
                token = lease()
                if token is None:
                    if cached is not None:
                        return cached, STALE  # someone is refreshing it; serve the last copy
                    waited = self._wait_for_filler(reread, now_ms)
                    if waited is not None:
                        return waited, HIT
            except CacheUnavailable:
                token = None
        try:
            loaded = load()
        except DatabaseUnavailable:
            if cached is not None:
                return cached, STALE
            raise
        if token is not None:
            with suppress(CacheUnavailable):  # the page is served either way
                fill(token, loaded)
        return loaded, MISS

    def _wait_for_filler(self, reread: Callable[[], E | None], now_ms: int) -> E | None:
        deadline = time.monotonic() + self._lock_wait
        while time.monotonic() < deadline:
            time.sleep(_POLL_SECONDS)
            entry = reread()
            if entry is not None and entry.fresh_until_ms > now_ms:
                return entry
        return None


def _fresh(entry: E | None, now_ms: int) -> E | None:
    return entry if entry is not None and entry.fresh_until_ms > now_ms else None
