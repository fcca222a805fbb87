"""The totals a step sets: the order count from MySQL, fresh for the API's published TTL."""

from __future__ import annotations

import time

import pymysql

from service.cache.entries import TotalsEntry, fresh_until
from service.cache.keys import DROP, SetTotals, TotalsChange
from service.cache.store import CacheUnavailable, RedisCache
from service.observability.logging import get_logger
from service.orders import repository
from service.orders.database import Connection

UNKNOWN_TTL_FRESHNESS = 5  # totals' freshness while the API has not published its TTL
CONFIG_REFRESH_SECONDS = 5.0

log = get_logger("service.invalidation")


class Totals:
    """Counts the orders for a step that changes the totals; DROP when MySQL cannot say."""

    def __init__(self, database: Connection, cache: RedisCache, cache_ttl: int) -> None:
        self._db = database
        self._cache = cache
        self._cache_ttl = cache_ttl
        self._ttl_cache: tuple[float, int] | None = None

    def fresh(self) -> TotalsChange:
        try:
            count = self._db.run(repository.count_orders)
        except pymysql.MySQLError as exc:
            log.warning("cannot count orders; dropping the cached totals", error=str(exc))
            return DROP
        fresh = fresh_until(int(time.time() * 1000), self.ttl())
        return SetTotals(TotalsEntry(fresh, count))

    def ttl(self) -> int:
        """The API's TTL as it published it (``config`` in Redis); until it has, a freshness so
        short that a TTL mismatch between the two cannot keep totals fresh for long."""
        now = time.monotonic()
        if self._ttl_cache is not None and now - self._ttl_cache[0] < CONFIG_REFRESH_SECONDS:
            return self._ttl_cache[1]
        try:
            published = self._cache.shared_setting("ttl")
        except CacheUnavailable:
            published = None
        ttl = min(self._cache_ttl, UNKNOWN_TTL_FRESHNESS)
        if published is not None and published.isdigit() and int(published) > 0:
            ttl = int(published)
        self._ttl_cache = (now, ttl)
        return ttl
