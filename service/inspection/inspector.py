"""Samples cached pages and totals, compares them with MySQL, confirms lies and repairs them.

After Meta's Polaris (TAO) and Uber's Cache Inspector (CacheFront): a process apart from the API
and the invalidator, so a bug in either cannot also blind the check. Each round (every
``ORDERS_INSPECTOR_INTERVAL`` seconds) it looks at the pages readers hit most (published by the
API), then the next pages of a tour of every page number (pages the index lost included), then a
few at random from the index, up to ``ORDERS_INSPECTOR_PAGES`` pages, plus the totals
(sampling.py). For each entry the API would serve as a hit (fresh by its TTL and within
``ORDERS_CACHE_MAX_LAG`` of its read time or of a checkpoint no later than Redis' clock) it reads
the same page from MySQL through the request path's repository and compares bytes.

A difference is not yet an inconsistency: a write may have committed between the Redis read and
the MySQL read, and the invalidator has up to the bound to apply it. So a mismatch is remembered
with the exact entry seen and rechecked once ``ORDERS_CACHE_MAX_LAG`` has passed in Redis' clock.
It is confirmed only if the same entry is still there, still servable as a hit, and still
different from MySQL: then some reader was served data older than the bound promises. A
confirmed entry is repaired at once: invalidated with the INVALIDATE script (the entry deleted,
the near caches told on the channel), counted, and its time recorded in Redis for ``/readyz``.

Cost on MySQL: at most ``ORDERS_INSPECTOR_MAX_QUERIES`` queries a second, first sightings and
rechecks together (a token bucket); entries that are not servable cost none. Redis: one MULTI
(MGET + TIME) per page looked at.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from service.cache.entries import PageEntry, TotalsEntry
from service.cache.keys import DROP, Invalidation
from service.cache.replies import Lookup
from service.cache.store import CacheUnavailable, RedisCache
from service.inspection import sampling
from service.observability import inspector_metrics
from service.observability.logging import get_logger
from service.orders.database import DatabaseUnavailable
from service.orders.pagination import total_pages

TOTALS = 0  # the page number under which the totals are tracked
INDEX_SAMPLE = 4  # pages at random from the index per round, besides the hot ones and the tour
BLOCK = 10  # consecutive pages per tour step: one Redis read, at most one MySQL read for all
_log = get_logger("service.inspection")


@dataclass(frozen=True)
class Suspect:
    """A mismatch seen once: the exact entry (encoded) and when it may be judged (Redis ms)."""

    kind: str
    page: int
    seen: bytes
    due_ms: int


class Inspector:
    """One inspector: ``round()`` is one sample; ``run()`` repeats it until stopped."""

    def __init__(
        self,
        cache: RedisCache,
        *,
        load_page: Callable[[int], bytes],
        load_total: Callable[[], int],
        pages: int,
        max_lag: float,
        max_queries: float = 20.0,
        interval: float = 1.0,
        load_pages: Callable[[int, int], list[bytes]] | None = None,
        block: int = BLOCK,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.cache = cache
        self._load_page = load_page
        self._load_total = load_total
        self._load_pages = load_pages
        self._block = block if load_pages is not None else 1
        self._pages = pages
        self._max_lag_ms = int(max_lag * 1000)
        self._wall = wall
        self._budget = sampling.QueryBudget(max_queries, max_queries * interval + 1.0, monotonic)
        self._tour = sampling.Tour(rng or random.Random())  # noqa: S311 - sampling, not secrets
        self._last_page = 1  # the tour's extent: the last page the totals or the index know
        self.suspects: dict[int, Suspect] = {}
        inspector_metrics.prepare_inspector()

    def round(self) -> None:
        """Recheck the suspects that are due, then sample new entries, within the budget."""
        self._budget.refill()
        try:
            self._recheck_due()
            if TOTALS not in self.suspects:
                self._check(TOTALS)
            for first, count in self._candidates():
                if not self._budget.available:
                    return
                if count == 1:
                    if first not in self.suspects:
                        self._check(first)
                else:
                    self._check_block(first, count)
        except (CacheUnavailable, DatabaseUnavailable) as exc:
            _log.info("inspection round skipped", error=str(exc))

    def run(self, stop: threading.Event, interval: float) -> None:
        while not stop.is_set():
            self.round()
            stop.wait(interval)

    def _candidates(self) -> list[sampling.Span]:
        """A quarter of the pages for what readers hit, the rest for the tour (in blocks)."""
        share = max(1, self._pages // 4)
        hot = self.cache.hot_pages(share)
        indexed = self.cache.sample_pages(INDEX_SAMPLE)
        last = max([self._last_page, *indexed, *hot])
        blocks = self._tour.next(
            -(-last // self._block), max(1, (self._pages - share) // self._block)
        )
        spans = [((b - 1) * self._block + 1, self._block) for b in blocks]
        return sampling.candidates(hot, spans, indexed)

    def _check_block(self, first: int, count: int) -> None:
        """``count`` pages from ``first``: one Redis read, and one MySQL read for every entry
        in it that the API would serve as a hit."""
        assert self._load_pages is not None
        lookups, now_ms = self.cache.read_block_at(first, count)
        self._saw_totals(lookups[0])
        servable = [
            (first + n, lookup.page)
            for n, lookup in enumerate(lookups)
            if lookup.page is not None
            and first + n not in self.suspects
            and self._servable(lookup.page, lookup, now_ms)
        ]
        if not servable or not self._budget.take():
            return
        fresh = self._load_pages(first, count)
        for page, entry in servable:
            inspector_metrics.count_inspection("page")
            if entry.orders_json != fresh[page - first]:
                inspector_metrics.count_inspection("page", mismatch=True)
                self.suspects[page] = Suspect(
                    "page", page, entry.encode(), now_ms + self._max_lag_ms
                )

    # ---- one entry ---------------------------------------------------------------------------

    def _look(self, page: int) -> tuple[PageEntry | TotalsEntry | None, Lookup, int]:
        lookup, now_ms = self.cache.read_at(max(page, 1))
        self._saw_totals(lookup)
        entry: PageEntry | TotalsEntry | None = lookup.totals if page == TOTALS else lookup.page
        return entry, lookup, now_ms

    def _saw_totals(self, lookup: Lookup) -> None:
        """The tour's extent follows the cached count of orders."""
        if lookup.totals is not None:
            pages = total_pages(lookup.totals.total_orders, self.cache.keys.page_size)
            self._last_page = max(1, pages)

    def _servable(self, entry: PageEntry | TotalsEntry, lookup: Lookup, now_ms: int) -> bool:
        """Would the API serve this entry as a hit now? (the same test as ``PageCache``; a
        checkpoint later than Redis' clock vouches for nothing, as in ``Freshness``)"""
        if entry.fresh_until_ms <= int(self._wall() * 1000):
            return False
        checkpoint = lookup.checkpoint_ms or 0
        if checkpoint > now_ms:
            checkpoint = 0
        return now_ms - max(entry.read_ms, checkpoint) <= self._max_lag_ms

    def _agrees(self, page: int, entry: PageEntry | TotalsEntry) -> bool:
        if isinstance(entry, TotalsEntry):
            return entry.total_orders == self._load_total()
        return entry.orders_json == self._load_page(page)

    def _check(self, page: int) -> None:
        entry, lookup, now_ms = self._look(page)
        if entry is None or not self._servable(entry, lookup, now_ms):
            return  # nothing the API would serve as a hit: no claim to check
        if not self._budget.take():
            return
        kind = "totals" if page == TOTALS else "page"
        inspector_metrics.count_inspection(kind)
        if self._agrees(page, entry):
            return
        inspector_metrics.count_inspection(kind, mismatch=True)
        self.suspects[page] = Suspect(kind, page, entry.encode(), now_ms + self._max_lag_ms)

    def _recheck_due(self) -> None:
        for page, suspect in list(self.suspects.items()):
            entry, lookup, now_ms = self._look(page)
            if now_ms <= suspect.due_ms:
                continue
            if (
                entry is None
                or entry.encode() != suspect.seen
                or not self._servable(entry, lookup, now_ms)
            ):
                del self.suspects[page]  # invalidated, refilled or aged out of the bound
                continue
            if not self._budget.take():
                return  # judged in a later round, when the budget allows
            del self.suspects[page]
            if self._agrees(page, entry):
                continue  # MySQL came back to it
            self._confirmed(suspect, now_ms)

    def _confirmed(self, suspect: Suspect, now_ms: int) -> None:
        """Count it, repair it (invalidate: deleted in Redis, dropped by every near cache), and
        record when, for ``/readyz``."""
        inspector_metrics.count_inspection(suspect.kind, confirmed=True)
        if suspect.kind == "totals":
            repair = Invalidation(totals=DROP)
        else:
            repair = Invalidation(pages=frozenset({suspect.page}))
        try:
            self.cache.invalidate(repair)
        except CacheUnavailable as exc:
            # Under the API's Redis user (service/orders/roles.py) the script's PUBLISH is
            # refused: the entry is deleted all the same, the near caches are not told.
            self.cache.drop(None if suspect.kind == "totals" else suspect.page)
            _log.warning(
                "repaired in Redis only: near caches keep their copy until it ages out; give "
                "the inspector a Redis user that may PUBLISH on the invalidations channel",
                error=str(exc),
            )
        self.cache.note_inconsistency(now_ms)
        inspector_metrics.count_inspection(suspect.kind, repaired=True)
        _log.error(
            "cache inconsistency confirmed and repaired: a hit would serve data older than the "
            "bound; the entry is invalidated",
            kind=suspect.kind,
            page=suspect.page if suspect.page != TOTALS else None,
            max_lag_ms=self._max_lag_ms,
        )
