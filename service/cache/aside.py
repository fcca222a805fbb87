"""Cache-aside reads of one page: near cache, then Redis, then MySQL under a lease.

The order of a read, and what each failure turns into:

1. The worker's near cache, if its invalidation feed is live: a hit costs no network call.
2. Redis: the page entry, the totals and the invalidator's checkpoint in one MGET. Redis down or
   slow counts as a miss.
3. What is missing or past its freshness is loaded from MySQL by the one request holding the
   lease (single flight). Others wait up to ``ORDERS_CACHE_LOCK_WAIT`` for it, or serve the
   previous copy marked stale. The fill is stored only if the lease survived (no stale set).
4. MySQL failing: a copy within ``ORDERS_CACHE_MAX_STALE`` of its freshness is served marked
   stale; otherwise ``DatabaseUnavailable`` (a 503 with Retry-After).

Every hit also passes the lag bound (``service.cache.freshness``): an entry whose data may be more
than ``ORDERS_CACHE_MAX_LAG`` behind MySQL (the invalidator dead, paused or behind) is treated
like one past its freshness, except that requests finding the lease taken wait for the filler
rather than serve it: it is refilled under the lease, or served marked stale if MySQL fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeVar, overload

from service.cache.entries import PageEntry, TotalsEntry, fresh_until
from service.cache.freshness import Freshness
from service.cache.hot import HotPages
from service.cache.near import NearCache
from service.cache.replies import Lease, Lookup
from service.cache.store import CacheUnavailable, RedisCache
from service.cache_outcomes import CacheOutcome
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


class CachedPage(NamedTuple):
    """A page ready to render, and where it came from. ``lag`` (seconds) is how far behind MySQL
    a stale answer may be; 0 for the others. (A NamedTuple: one is made per hit, and a frozen
    dataclass's ``__init__`` costs a ``setattr`` call per field.)"""

    number: int
    entry: PageEntry
    total_orders: int
    outcome: CacheOutcome
    lag: float = 0.0


@dataclass(frozen=True, slots=True)
class RedisRead:
    """What one request read from Redis for a page: the entries, when (this host's clock and
    Redis'), and, if Redis failed, how that request is counted (``unavailable``)."""

    number: int
    lookup: Lookup
    now_ms: int
    redis_now: float
    unavailable: CacheOutcome | None = None

    @property
    def redis_ok(self) -> bool:
        return self.unavailable is None


class PageCache:
    """Serves pages through the cache. The loaders are the only way it reaches MySQL."""

    def __init__(
        self,
        redis_cache: RedisCache,
        near: NearCache | None,
        *,
        load_page: Callable[[int, str], bytes],
        load_total: Callable[[str], int],
        page_size: int,
        ttl: int,
        lock_wait: float,
        freshness: Freshness,
        wall: Callable[[], float] = time.time,
        hot: HotPages | None = None,
        replica_budget: float | None = None,
    ) -> None:
        self.hot = hot or HotPages()
        self.redis = redis_cache
        self.near = near
        self.freshness = freshness
        self._wall = wall
        self._load_page = load_page
        self._load_total = load_total
        self.page_size = page_size
        self._ttl = ttl
        self._lock_wait = lock_wait
        self._grouped = redis_cache.keys if redis_cache.keys.grouped else None
        # None: no replicas. Else how old the lease's checkpoint may be for a replica to serve
        # the fill: ORDERS_CACHE_MAX_LAG less ORDERS_DATABASE_REPLICA_WAIT (see _fill_gate).
        self._replica_budget_ms = None if replica_budget is None else replica_budget * 1000

    def get(self, number: int, read: RedisRead | None = None) -> CachedPage:
        """The page, from the nearest place that has it fresh. Raises ``PageNotFound`` or
        ``DatabaseUnavailable``. ``read``: what ``hit`` already read from Redis for this
        request, so Redis is read once."""
        if read is None or read.number != number:
            found = self.hit(number)
            if isinstance(found, CachedPage):
                return found
            read = found
        return self._serve(read)

    def hit(self, number: int) -> CachedPage | RedisRead:
        """The page if it is a hit, from the near cache or else Redis; otherwise what was read
        from Redis, for ``get`` to go on from. Never raises for Redis and never reaches MySQL:
        the fast path in front of Flask (``service.api.hits``) asks this."""
        self.hot.saw(number)
        now_ms = int(self._wall() * 1000)
        near = self.near
        version = -1
        if near is not None and near.live():
            version = near.version  # noted before the read: see NearCache (stale-set safety)
            found = self._near_hit(near, number, now_ms)
            if found is not None:
                return found
        read = self._read_redis(number, now_ms, version)
        if read.redis_ok:
            checkpoint = read.lookup.checkpoint_ms
            totals = self._usable(read.lookup.totals, now_ms, read.redis_now, checkpoint)
            page = self._usable(read.lookup.page, now_ms, read.redis_now, checkpoint)
            if (
                totals is not None
                and page is not None
                and number <= total_pages(totals.total_orders, self.page_size)
            ):
                return CachedPage(number, page, totals.total_orders, HIT)
        return read

    def _near_hit(self, near: NearCache, number: int, now_ms: int) -> CachedPage | None:
        """A hit needs the page and the totals, both fresh by their TTL and within the lag
        bound."""
        entry, totals = near.get(number)
        if (
            entry is not None
            and totals is not None
            and entry.fresh_until_ms > now_ms
            and totals.fresh_until_ms > now_ms
            and self.freshness.near_hit(entry.read_ms, totals.read_ms, self._group(number))
        ):
            return CachedPage(number, entry, totals.total_orders, HIT)
        return None

    def _group(self, number: int) -> int | None:
        """The page's group on a cluster (its channel's checkpoint vouches for it), else None."""
        return self._grouped.group_of(number) if self._grouped is not None else None

    def _heard(self, number: int) -> bool:
        """On a cluster, a page's entry is kept near only if its group's channel is heard."""
        groups = self.near.groups if self.near is not None else None
        return groups is None or self._group(number) in groups

    def _read(self, number: int) -> Lookup:
        lookup = self.redis.read(number)
        self.freshness.saw_checkpoint(lookup.checkpoint_ms)
        return lookup

    def _read_redis(self, number: int, now_ms: int, near_version: int) -> RedisRead:
        """One read of the page, the totals and the checkpoint; what was usable goes to the
        near cache unless an invalidation arrived since ``near_version``."""
        try:
            with tracing.span("cache.lookup", page=number):
                lookup = self._read(number)
        except CacheUnavailable:
            outcome = CacheOutcome.ERROR if self.redis.breaker.is_closed else CacheOutcome.BYPASS
            return RedisRead(
                number, Lookup(None, None, None), now_ms, self.freshness.clock.now_ms(), outcome
            )
        redis_now = self.freshness.clock.now_ms()
        if self.near is not None and near_version >= 0 and self._heard(number):
            self.near.store(
                number,
                self._usable(lookup.page, now_ms, redis_now, lookup.checkpoint_ms),
                self._usable(lookup.totals, now_ms, redis_now, lookup.checkpoint_ms),
                near_version,
            )
        return RedisRead(number, lookup, now_ms, redis_now)

    def _serve(self, read: RedisRead) -> CachedPage:
        """The page from what Redis held: hits as they are, the rest loaded under the lease."""
        number, lookup, now_ms, redis_now = read.number, read.lookup, read.now_ms, read.redis_now
        redis_ok = read.redis_ok
        totals, totals_outcome = self._resolve(
            lookup.totals,
            now_ms,
            redis_now,
            redis_ok,
            lookup.checkpoint_ms,
            lease=lambda: self.redis.lease_totals(number),
            reread=lambda: _with_checkpoint(self._read(number), totals=True),
            load=lambda gate: TotalsEntry(
                self._fresh_until(now_ms), self._load_total(gate[0]), gate[1]
            ),
            fill=lambda token, e: self.redis.fill_totals(token, e, number),
        )
        pages = total_pages(totals.total_orders, self.page_size)
        if number > pages:
            raise PageNotFound(number, pages)

        entry, page_outcome = self._resolve(
            lookup.page,
            now_ms,
            redis_now,
            redis_ok,
            lookup.checkpoint_ms,
            lease=lambda: self.redis.lease_page(number),
            reread=lambda: _with_checkpoint(self._read(number), totals=False),
            load=lambda gate: PageEntry.build(
                self._load_page(number, gate[0]), self._fresh_until(now_ms), gate[1]
            ),
            fill=lambda token, e: self.redis.fill_page(number, token, e),
        )
        if STALE in (page_outcome, totals_outcome):
            lag_ms = max(
                self._lag_ms(entry.read_ms, redis_now, lookup) if page_outcome == STALE else 0,
                self._lag_ms(totals.read_ms, redis_now, lookup) if totals_outcome == STALE else 0,
            )
            return CachedPage(number, entry, totals.total_orders, STALE, max(0.0, lag_ms / 1000))
        outcome = read.unavailable or page_outcome
        return CachedPage(number, entry, totals.total_orders, outcome)

    def _fresh_until(self, now_ms: int) -> int:
        return fresh_until(now_ms, self._ttl)

    def _lag_ms(self, read_ms: int, redis_now: float, lookup: Lookup) -> float:
        return self.freshness.lag_ms(read_ms, redis_now, lookup.checkpoint_ms)

    def _usable(
        self, entry: E | None, now_ms: int, redis_now: float, checkpoint_ms: int | None
    ) -> E | None:
        """The entry if it may be served as a hit: fresh by its TTL and within the lag bound."""
        if entry is None or entry.fresh_until_ms <= now_ms:
            return None
        return entry if self.freshness.current(entry.read_ms, redis_now, checkpoint_ms) else None

    def _resolve(
        self,
        cached: E | None,
        now_ms: int,
        redis_now: float,
        redis_ok: bool,
        checkpoint_ms: int | None,
        *,
        lease: Callable[[], Lease | None],
        reread: Callable[[], tuple[E | None, int | None]],
        load: Callable[[tuple[str, int]], E],
        fill: Callable[[str, E], bool],
    ) -> tuple[E, CacheOutcome]:
        """A fresh entry within the lag bound, or one loaded under the lease (single flight).
        ``load`` gets ``_fill_gate``'s (GTID state, read time) for the lease taken (or none)."""
        lagging = False
        if cached is not None and cached.fresh_until_ms > now_ms:
            if self.freshness.current(cached.read_ms, redis_now, checkpoint_ms):
                return cached, HIT
            lagging = True  # fresh by its TTL, but possibly more than MAX_LAG behind MySQL
        taken: Lease | None = None
        if redis_ok:
            try:
                taken = lease()
                if taken is None:
                    if cached is not None and not lagging:
                        return cached, STALE  # someone is refreshing it; serve the last copy
                    waited = self._wait_for_filler(reread, now_ms)
                    if waited is not None:
                        return waited, HIT
                    if cached is not None:
                        return cached, STALE  # the filler is slow: the copy, marked stale
            except CacheUnavailable:
                taken = None
        try:
            loaded = load(self._fill_gate(taken))
        except DatabaseUnavailable:
            if cached is not None:
                return cached, STALE
            raise
        if taken is not None:
            with suppress(CacheUnavailable):  # the page is served either way
                fill(taken.token, loaded)
        return loaded, MISS

    def _fill_gate(self, lease: Lease | None) -> tuple[str, int]:
        """The GTID state a replica must have applied to serve this fill ('' = the primary
        reads) and the read time the entry may claim. From a replica the data is as new as
        the lease's checkpoint, not its clock: the state handed out includes every commit
        before that checkpoint (docs/guarantees.md, "MySQL replicas"), nothing more is known.
        So a replica serves only while that checkpoint is within ``_replica_budget_ms`` of the
        lease: an invalidator dead or behind sends fills to the primary, and the lag bound
        holds for MISSes too."""
        if lease is None:
            return "", 0  # Redis failed: nothing will be stored
        budget, checkpoint = self._replica_budget_ms, lease.checkpoint_ms
        if not lease.gtid or budget is None or checkpoint is None:
            return "", lease.at_ms
        if not 0 <= lease.at_ms - checkpoint <= budget:
            return "", lease.at_ms
        return lease.gtid, checkpoint

    def _wait_for_filler(
        self, reread: Callable[[], tuple[E | None, int | None]], now_ms: int
    ) -> E | None:
        deadline = time.monotonic() + self._lock_wait
        while time.monotonic() < deadline:
            time.sleep(_POLL_SECONDS)
            entry, checkpoint_ms = reread()
            if entry is not None:
                usable = self._usable(entry, now_ms, self.freshness.clock.now_ms(), checkpoint_ms)
                if usable is not None:
                    return usable
        return None


@overload
def _with_checkpoint(
    lookup: Lookup, *, totals: Literal[True]
) -> tuple[TotalsEntry | None, int | None]: ...
@overload
def _with_checkpoint(
    lookup: Lookup, *, totals: Literal[False]
) -> tuple[PageEntry | None, int | None]: ...
def _with_checkpoint(
    lookup: Lookup, *, totals: bool
) -> tuple[PageEntry | TotalsEntry | None, int | None]:
    """An entry of a re-read with the checkpoint read beside it (which alone may vouch for it:
    on a cluster each group has its own)."""
    return (lookup.totals if totals else lookup.page), lookup.checkpoint_ms
