"""Samples cached pages and totals, compares them with MySQL, and counts confirmed lies.

After Meta's Polaris (TAO) and Uber's Cache Inspector (CacheFront): a process apart from the API
and the invalidator, so a bug in either cannot also blind the check. Each round (every
``ORDERS_INSPECTOR_INTERVAL`` seconds) it picks up to ``ORDERS_INSPECTOR_PAGES`` pages at random
from the cache's index, plus the totals, and for each entry the API would serve as a hit (fresh
by its TTL and within ``ORDERS_CACHE_MAX_LAG`` of its read time or the checkpoint) reads the same
page from MySQL through the request path's repository and compares bytes.

A difference is not yet an inconsistency: a write may have committed between the Redis read and
the MySQL read, and the invalidator has up to the bound to apply it. So a mismatch is remembered
with the exact entry seen and rechecked once ``ORDERS_CACHE_MAX_LAG`` has passed in Redis' clock.
It is confirmed only if the same entry is still there, still servable as a hit, and still
different from MySQL: then some reader was served data older than the bound promises.

Cost on MySQL: at most ``ORDERS_INSPECTOR_PAGES`` page reads plus one count per round, and at
most as many rechecks again; nothing else. Redis: one MULTI (MGET + TIME) per entry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from service.cache.entries import PageEntry, TotalsEntry
from service.cache.store import CacheUnavailable, Lookup, RedisCache
from service.observability import metrics
from service.observability.logging import get_logger
from service.orders.database import DatabaseUnavailable

TOTALS = 0  # the page number under which the totals are tracked
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
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.cache = cache
        self._load_page = load_page
        self._load_total = load_total
        self._pages = pages
        self._max_lag_ms = int(max_lag * 1000)
        self._wall = wall
        self.suspects: dict[int, Suspect] = {}
        metrics.prepare_inspector()

    def round(self) -> None:
        """Recheck the suspects that are due, then sample new entries."""
        try:
            self._recheck_due()
            for page in [TOTALS, *self.cache.sample_pages(self._pages)]:
                if page not in self.suspects:
                    self._check(page)
        except (CacheUnavailable, DatabaseUnavailable) as exc:
            _log.info("inspection round skipped", error=str(exc))

    def run(self, stop: threading.Event, interval: float) -> None:
        while not stop.is_set():
            self.round()
            stop.wait(interval)

    # ---- one entry ---------------------------------------------------------------------------

    def _look(self, page: int) -> tuple[PageEntry | TotalsEntry | None, Lookup, int]:
        lookup, now_ms = self.cache.read_at(max(page, 1))
        entry: PageEntry | TotalsEntry | None = lookup.totals if page == TOTALS else lookup.page
        return entry, lookup, now_ms

    def _servable(self, entry: PageEntry | TotalsEntry, lookup: Lookup, now_ms: int) -> bool:
        """Would the API serve this entry as a hit now? (the same test as ``PageCache``)"""
        if entry.fresh_until_ms <= int(self._wall() * 1000):
            return False
        return now_ms - max(entry.read_ms, lookup.checkpoint_ms or 0) <= self._max_lag_ms

    def _agrees(self, page: int, entry: PageEntry | TotalsEntry) -> bool:
        if isinstance(entry, TotalsEntry):
            return entry.total_orders == self._load_total()
        return entry.orders_json == self._load_page(page)

    def _check(self, page: int) -> None:
        entry, lookup, now_ms = self._look(page)
        if entry is None or not self._servable(entry, lookup, now_ms):
            return  # nothing the API would serve as a hit: no claim to check
        kind = "totals" if page == TOTALS else "page"
        metrics.count_inspection(kind)
        if self._agrees(page, entry):
            return
        metrics.count_inspection(kind, mismatch=True)
        self.suspects[page] = Suspect(kind, page, entry.encode(), now_ms + self._max_lag_ms)

    def _recheck_due(self) -> None:
        budget = self._pages + 1
        for page, suspect in list(self.suspects.items()):
            if budget == 0:
                return
            entry, lookup, now_ms = self._look(page)
            if now_ms <= suspect.due_ms:
                continue
            budget -= 1
            del self.suspects[page]
            if (
                entry is None
                or entry.encode() != suspect.seen
                or not self._servable(entry, lookup, now_ms)
                or self._agrees(page, entry)
            ):
                continue  # invalidated, refilled, aged out of the bound, or MySQL came back to it
            metrics.count_inspection(suspect.kind, confirmed=True)
            _log.error(
                "cache inconsistency confirmed: a hit would serve data older than the bound",
                kind=suspect.kind,
                page=page if page != TOTALS else None,
                max_lag_ms=self._max_lag_ms,
            )
