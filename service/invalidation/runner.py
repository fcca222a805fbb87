"""``orders-service invalidate``: the binlog in, cache invalidations out, position saved after.

Each committed transaction on the orders table becomes one atomic Redis step (the INVALIDATE
script) that drops the pages it made wrong, replaces the totals, publishes the change to the
workers' near caches and records the binlog position just after the transaction. Redis failing
means retrying the same step; the position never moves past an invalidation that did not happen,
so a restart (even after SIGKILL) resumes at the first transaction not yet applied. Replays are
harmless: invalidating twice is the same as once.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pymysql

from service.cache.entries import TotalsEntry, fresh_until
from service.cache.keys import DROP, KEEP, Invalidation, SetTotals, TotalsChange
from service.cache.store import CacheUnavailable
from service.config import Settings
from service.invalidation import planner
from service.invalidation.binlog import (
    BinlogFollower,
    BinlogPosition,
    ChangeBatch,
    PositionUnavailable,
    RowChange,
    current_position,
)
from service.observability import metrics
from service.observability.logging import get_logger
from service.orders import repository
from service.orders.database import connect

ORDERS_TABLE = "orders"
RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 0.5  # Redis back: pending invalidations land within half a second
IDLE_POSITION_SAVE_SECONDS = 5.0

log = get_logger("service.invalidation")


def order_changes(changes: list[RowChange], schema: str) -> planner.OrderChanges:
    """The ids one transaction touched in ``schema.orders`` (an id change is a move)."""
    inserted: set[int] = set()
    updated: set[int] = set()
    deleted: set[int] = set()
    for change in changes:
        if not change.concerns(schema, ORDERS_TABLE):
            continue
        if change.kind == "reset":
            return planner.OrderChanges(reset=True)
        before, after = change.before_id, change.after_id
        if change.kind == "insert" and after is not None:
            inserted.add(after)
        elif change.kind == "delete" and before is not None:
            deleted.add(before)
        elif change.kind == "update" and before is not None and after is not None:
            if before == after:
                updated.add(after)
            else:
                deleted.add(before)
                inserted.add(after)
        else:
            return planner.OrderChanges(reset=True)  # a key we cannot read: be safe
    return planner.OrderChanges(frozenset(inserted), frozenset(updated), frozenset(deleted))


class Invalidator:
    """Follows the binlog and applies invalidations until ``stop()``."""

    def __init__(self, settings: Settings) -> None:
        from service.services import build_redis_cache

        self.settings = settings
        # Off the request path, so a longer timeout and a quick breaker retry suit it better.
        self.cache = build_redis_cache(
            settings, timeout=max(settings.cache_timeout, 2.0), breaker_reset=0.2
        )
        self._stop = threading.Event()
        self._follower: BinlogFollower | None = None
        self._connection: Any = None
        self.applied = 0

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        if self._follower is not None:
            self._follower.stop()

    def run(self) -> None:
        url = self.settings.database_url
        position = self._start_position()
        log.info("following binlog", database=url.redacted(), position=str(position))
        while not self._stop.is_set():
            self._follower = BinlogFollower(
                url,
                server_id=self.settings.invalidator_server_id,
                start=position,
                schemas=[url.database],
            )
            try:
                position = self._follow(self._follower, position)
            except PositionUnavailable as exc:
                # The server purged binlogs we had not read: start over from now, clearing all.
                log.warning("stored binlog position is gone; starting over", error=str(exc))
                position = self._start_fresh()
            finally:
                self._follower.close()

    def _follow(self, follower: BinlogFollower, position: BinlogPosition) -> BinlogPosition:
        saved_at = time.monotonic()
        saved = position
        for batch in follower:
            if self._stop.is_set():
                break
            changes = order_changes(batch.changes, self.settings.database_url.database)
            if changes:
                self._apply(changes, batch)
                saved, saved_at = batch.position, time.monotonic()
            elif (
                batch.position != saved and time.monotonic() - saved_at > IDLE_POSITION_SAVE_SECONDS
            ):
                self._retry(
                    lambda p=batch.position: self.cache.invalidate(Invalidation(position=str(p)))
                )
                saved, saved_at = batch.position, time.monotonic()
            position = batch.position
            metrics.set_invalidation_lag(follower.lag_seconds())
        return position

    def _start_position(self) -> BinlogPosition:
        """Where we left off; or now, after dropping everything, since what happened while
        nobody followed the binlog is unknown."""
        stored = self._retry(self.cache.stored_position)
        if stored:
            return BinlogPosition.parse(stored)
        return self._start_fresh()

    def _start_fresh(self) -> BinlogPosition:
        position = current_position(self.settings.database_url)
        self._retry(
            lambda: self.cache.invalidate(
                Invalidation(from_page=1, totals=DROP, position=str(position))
            )
        )
        log.info("no stored binlog position: cache cleared, starting now", position=str(position))
        return position

    def _apply(self, changes: planner.OrderChanges, batch: ChangeBatch) -> None:
        page_size = self.settings.page_size
        try:
            if changes.reset:
                self._query(repository.forget_counts_if_empty)
            plan = planner.plan(changes, self._rows_before, page_size)
            totals: TotalsChange = KEEP
            if plan.totals_changed:
                fresh = fresh_until(int(time.time() * 1000), self.settings.cache_ttl)
                totals = SetTotals(TotalsEntry(fresh, self._query(repository.count_orders)))
        except pymysql.MySQLError as exc:
            # Cannot locate the rows: drop every page and the totals, which is always correct.
            log.warning("cannot rank changed rows; invalidating everything", error=str(exc))
            plan, totals = planner.Plan(from_page=1, totals_changed=True), DROP
        self._retry(
            lambda: self.cache.invalidate(
                Invalidation(
                    pages=frozenset(plan.pages),
                    from_page=plan.from_page,
                    totals=totals,
                    position=str(batch.position),
                )
            )
        )
        self.applied += 1
        metrics.count_invalidations("page", len(plan.pages))
        if plan.from_page is not None:
            metrics.count_invalidations("shift")
        if plan.totals_changed:
            metrics.count_invalidations("totals")

    def _rows_before(self, order_id: int) -> int:
        return int(self._query(lambda cursor: repository.rows_before_id(cursor, order_id)))

    def _query(self, work: Any) -> Any:
        if self._connection is None:
            self._connection = connect(self.settings.database_url, timeout=5)
        try:
            with self._connection.cursor() as cursor:
                return work(cursor)
        except pymysql.MySQLError:
            self._connection.close()
            self._connection = None
            raise

    def _retry(self, call: Any) -> Any:
        """Redis calls are repeated until they succeed (or we are stopped): nothing is skipped."""
        delay = RETRY_SECONDS
        while True:
            try:
                return call()
            except CacheUnavailable as exc:
                if self._stop.is_set():
                    raise
                log.warning("redis unavailable; retrying", error=str(exc), retry_in=delay)
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)


def run_invalidator(settings: Settings) -> None:
    """The process: metrics endpoint, signal handling, then follow until SIGTERM/SIGINT."""
    from service import observability
    from service.observability import logging as service_logging

    service_logging.configure(settings)
    observability.start_invalidator_metrics_server(settings)
    invalidator = Invalidator(settings)

    def stop(_signum: int, _frame: object) -> None:
        invalidator.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        invalidator.run()
    except CacheUnavailable:
        if not invalidator.stopping:
            raise
