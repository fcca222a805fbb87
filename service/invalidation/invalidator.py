"""``orders-service invalidate``: the binlog in, cache invalidations out, position saved after.

Each committed transaction on the orders table becomes an atomic Redis step (the INVALIDATE
script) that drops the pages it made wrong, replaces the totals and publishes the change to the
workers' near caches. A binlog reader can see a commit a moment before other sessions can read
it, so a fill in that moment could store the old row: the same pages are invalidated once more
``recheck_delay`` later, and only that second step records the binlog position (and the
checkpoint), so a restart (even after SIGKILL) replays both. Redis failing means retrying the
same step; the position never moves past an invalidation that did not happen. Replays are
harmless: invalidating twice is the same as once.

Progress is proven end to end (pt-heartbeat's idea): every ``heartbeat_seconds`` the invalidator
writes a row of the ``heartbeat`` table and notes the local monotonic time it sent it. When the
row comes back through the binlog and everything before it has been applied, the step carries
that send time converted to Redis' clock from a ``TIME`` reading taken for each attempt
(``checkpoint``, see checkpoint.py for the invariant): every change committed to MySQL before it
is applied. Only differences of one clock are ever taken, so no two hosts' clocks are compared,
and a step that waited on Redis never claims the time it waited.

One invalidator is active at a time: it holds a lease in Redis whose fencing token every step
carries, and the script refuses a step whose token is no longer the newest (``leadership``).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pymysql

from service.cache.entries import TotalsEntry, fresh_until
from service.cache.keys import DROP, KEEP, Invalidation, SetTotals, TotalsChange
from service.cache.store import CacheUnavailable, RedisCache
from service.config import DatabaseURL, Settings
from service.invalidation import planner
from service.invalidation.changes import BinlogPosition, ChangeBatch, RowChange
from service.invalidation.checkpoint import Checkpointer
from service.invalidation.follower import BinlogFollower
from service.invalidation.leadership import Lease
from service.invalidation.mysql_source import (
    PositionUnavailable,
    check_server,
    current_position,
    foreign_history,
)
from service.invalidation.repair import SchemaRepair
from service.invalidation.verifier import CountVerifier
from service.observability import metrics
from service.observability.logging import get_logger
from service.orders import repository, schema
from service.orders.database import Connection

T = TypeVar("T")
HEARTBEAT_TABLE = "heartbeat"
RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 0.5  # Redis back: pending invalidations land within half a second
STREAM_HEARTBEAT_SECONDS = 0.1  # the server's idle heartbeat: how late a due recheck can be
UNKNOWN_TTL_FRESHNESS = 5  # totals' freshness while the API has not published its TTL
CONFIG_REFRESH_SECONDS = 5.0

log = get_logger("service.invalidation")


class Fenced(Exception):
    """A newer invalidator holds the lease: this one must stop applying and stand by."""


@dataclass(frozen=True)
class InvalidatorOptions:
    """What the invalidator needs besides its connections (the ORDERS_INVALIDATOR_* settings)."""

    page_size: int
    server_id: int
    cache_ttl: int
    heartbeat_seconds: float = 0.5
    recheck_delay: float = 0.1
    stall_after: float = 10.0
    chunk_rows: int = 5_000
    lease_ttl: float = 3.0
    first_contact_timeout: float = 60.0
    verify_blocks: int = 4
    verify_interval: float = 1.0
    repair_settle: float = 0.0


@dataclass
class _Pending:
    """A recheck to apply at ``due``: the pages again, and the progress it records."""

    due: float
    plan: planner.Plan | None
    position: BinlogPosition | None
    heartbeat_sent: float | None = None


class Invalidator:
    """Follows the binlog and applies invalidations until ``stop()``."""

    def __init__(
        self,
        source: DatabaseURL,
        cache: RedisCache,
        database: Connection,
        heartbeat_database: Connection,
        options: InvalidatorOptions,
    ) -> None:
        self.source = source
        self.cache = cache
        self.options = options
        self._db = database
        self._heartbeat_db = heartbeat_database
        self._stop = threading.Event()
        self._follower: BinlogFollower | None = None
        self._pending: collections.deque[_Pending] = collections.deque()
        self._sent: dict[int, float] = {}  # heartbeat seq -> monotonic time it was sent
        self._sent_lock = threading.Lock()
        self._seq = secrets.randbits(62)  # unique per process: old rows never match ours
        self._checkpoint_sent: float | None = None
        self._started = time.monotonic()
        self._progress_at = time.monotonic()
        self._ttl_cache: tuple[float, int] | None = None
        self.lease = Lease(cache, options.lease_ttl)
        self._repair = SchemaRepair(database.run, settle=options.repair_settle)
        self._verifier = CountVerifier(
            database.run, blocks=options.verify_blocks, interval=options.verify_interval
        )
        self._checkpoints = Checkpointer(cache.time)
        self.active = threading.Event()
        self.applied = 0

    # ---- control --------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        if self._follower is not None:
            self._follower.stop()

    def healthy(self) -> bool:
        """False once nothing moved (no binlog event, no heartbeat, no standby tick) for
        ``stall_after`` seconds: the kubelet should restart a stalled invalidator."""
        return time.monotonic() - self._progress_at < self.options.stall_after

    def checkpoint_age(self) -> float:
        """Seconds since the newest moment before which every commit is known applied."""
        since = self._checkpoint_sent if self._checkpoint_sent is not None else self._started
        return max(0.0, time.monotonic() - since)

    def _progress(self) -> None:
        self._progress_at = time.monotonic()

    # ---- the process -----------------------------------------------------------------------
    def run(self) -> None:
        """Wait for MySQL, refuse what cannot be followed, then lead or stand by until stopped."""
        metrics.set_invalidator_gauge("leader", 0)
        info = self._first_contact(lambda: check_server(self.source))
        if not info.logs_rows:
            log.warning(
                "binlog_format is not ROW: writes logged as statements reset the whole cache",
                binlog_format=info.settings.get("binlog_format"),
            )
        metrics.set_invalidator_gauge("binlog_row_format", 1 if info.logs_rows else 0)
        self._db.run(schema.refuse_cascading_foreign_keys)
        heartbeats = threading.Thread(target=self._beat, name="invalidator-heartbeat", daemon=True)
        heartbeats.start()
        while not self._stop.is_set():
            if not self._wait_for_lease():
                return
            try:
                self._lead()
            except Fenced:
                log.warning("another invalidator took over; standing by")
            finally:
                self.active.clear()
                metrics.set_invalidator_gauge("leader", 0)
                self.lease.release()
        self.lease.release()

    def _first_contact(self, probe: Callable[[], T]) -> T:
        """MySQL may start after us (compose, Kubernetes): retry with capped backoff until
        ``first_contact_timeout`` (ORDERS_DATABASE_WAIT_TIMEOUT, as ``migrate`` waits), then
        give up with the last error. Waiting counts as progress for /healthz."""
        deadline = time.monotonic() + self.options.first_contact_timeout
        delay = 0.2
        while True:
            try:
                return probe()
            except pymysql.MySQLError as exc:
                if time.monotonic() + delay > deadline or self._stop.is_set():
                    raise
                log.warning("MySQL not reachable yet; retrying", error=str(exc), retry_in=delay)
                self._progress()  # waiting on purpose is not a stall
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def _wait_for_lease(self) -> bool:
        """Stand by until this process holds the lease (True) or is stopped (False)."""
        while not self._stop.is_set():
            self._progress()
            try:
                if self.lease.acquire():
                    log.info("holding the invalidator lease", fence=self.lease.token)
                    self.active.set()
                    metrics.set_invalidator_gauge("leader", 1)
                    return True
            except CacheUnavailable as exc:
                log.warning("redis unavailable while standing by", error=str(exc))
            self._stop.wait(min(0.25, self.options.lease_ttl / 4))
        return False

    def _lead(self) -> None:
        # Rechecks left from an earlier term carry positions a newer leader may have passed.
        self._pending.clear()
        position = self._start_position()
        log.info("following binlog", database=self.source.redacted(), position=str(position))
        while not self._stop.is_set():
            self._follower = BinlogFollower(
                self.source,
                server_id=self.options.server_id,
                start=position,
                schemas=[self.source.database],
                tables={planner.ORDERS_TABLE: None, HEARTBEAT_TABLE: ("invalidator", "seq")},
                heartbeat_seconds=STREAM_HEARTBEAT_SECONDS,
                chunk_rows=self.options.chunk_rows,
            )
            try:
                position = self._follow(self._follower, position)
            except PositionUnavailable as exc:
                # The server purged binlogs we had not read: start over from now, clearing all.
                log.warning("stored binlog position is gone; starting over", error=str(exc))
                position = self._start_fresh("the stored position is no longer on the server")
            finally:
                self._follower.close()

    def _follow(self, follower: BinlogFollower, position: BinlogPosition) -> BinlogPosition:
        unreadable = 0
        for batch in follower:
            if self._stop.is_set():
                break
            if not self.lease.held():
                raise Fenced("the lease lapsed")
            self._progress()
            while follower.unreadable_events > unreadable:
                unreadable += 1
                metrics.count_invalidator_event("unreadable_event")
            self._handle(batch)
            self._drain(time.monotonic())
            self._check_counts()
            if not batch.partial:
                position = batch.position
        self._drain(float("inf"))
        return position

    # ---- positions ---------------------------------------------------------------------------
    def _start_position(self) -> BinlogPosition:
        """Where we left off, if it is this server's history; otherwise now, after dropping
        everything, since what happened while nobody followed the binlog is unknown."""
        stored = self._retry(self.cache.stored_position)
        if not stored:
            return self._start_fresh("no stored binlog position")
        try:
            position = BinlogPosition.parse(stored)
        except ValueError:
            return self._start_fresh(f"unreadable stored position {stored!r}")
        reason = foreign_history(self.source, position)
        if reason is not None:
            return self._start_fresh(f"stored position {position} not resumable: {reason}")
        return position

    def _start_fresh(self, reason: str) -> BinlogPosition:
        position = current_position(self.source)
        self._step(Invalidation(from_page=1, totals=DROP, position=position.stored()))
        metrics.count_invalidator_event("fresh_start")
        log.warning("cache cleared, following from now", reason=reason, position=str(position))
        return position

    # ---- applying ----------------------------------------------------------------------------
    def _handle(self, batch: ChangeBatch) -> None:
        changes = planner.order_changes(batch.changes, self.source.database)
        sent = None if batch.partial else self._heartbeat_in(batch.changes)
        position = None if batch.partial else batch.position
        now = time.monotonic()
        if changes:
            plan, totals = self._plan(changes)
            delay = self.options.recheck_delay
            self._step(
                Invalidation(
                    pages=frozenset(plan.pages),
                    from_page=plan.from_page,
                    totals=totals,
                    position=position.stored() if position is not None and not delay else None,
                ),
                sent=None if delay else sent,
            )
            self._count(plan)
            if not delay:
                self._checkpointed(sent)
            else:
                self._pending.append(_Pending(now + delay, plan, position, sent))
        elif position is not None and (sent is not None or not batch.idle):
            due = self._pending[-1].due if self._pending else now
            self._pending.append(_Pending(due, None, position, sent))
        self.applied += 1 if changes else 0

    def _drain(self, now: float) -> None:
        """Apply every recheck that is due, merged into one step."""
        if not self._pending or self._pending[0].due > now:
            return
        pages: set[int] = set()
        from_page: int | None = None
        totals_changed = False
        position: BinlogPosition | None = None
        sent: float | None = None
        while self._pending and self._pending[0].due <= now:
            item = self._pending.popleft()
            if item.plan is not None:
                pages |= item.plan.pages
                if item.plan.from_page is not None:
                    from_page = min(from_page or item.plan.from_page, item.plan.from_page)
                totals_changed = totals_changed or item.plan.totals_changed
            position = item.position or position
            sent = item.heartbeat_sent if item.heartbeat_sent is not None else sent
        if from_page is not None:
            pages = {page for page in pages if page < from_page}
        totals: TotalsChange = KEEP
        if totals_changed:
            totals = self._fresh_totals()
        self._step(
            Invalidation(
                pages=frozenset(pages),
                from_page=from_page,
                totals=totals,
                position=position.stored() if position is not None else None,
            ),
            sent=sent,
        )
        self._checkpointed(sent)

    def _checkpointed(self, sent: float | None) -> None:
        if sent is not None:
            self._checkpoint_sent = max(self._checkpoint_sent or sent, sent)

    def _plan(self, changes: planner.OrderChanges) -> tuple[planner.Plan, TotalsChange]:
        try:
            if changes.reset:
                metrics.count_invalidator_event("reset")
                self._repair.after_reset(changes)
            self._verifier.suspect(changes.inserted | changes.deleted)
            plan = planner.plan(changes, self._rows_before, self.options.page_size)
            totals = self._fresh_totals() if plan.totals_changed else KEEP
        except pymysql.MySQLError as exc:
            # Cannot locate the rows: drop every page and the totals, which is always correct.
            log.warning("cannot rank changed rows; invalidating everything", error=str(exc))
            plan, totals = planner.Plan(from_page=1, totals_changed=True), DROP
        return plan, totals

    def _check_counts(self) -> None:
        """Counts rebuilt after DDL (repair) or a drifted block repaired (verifier): the pages
        filled from the old counts, from that block's first order on, and the totals go."""
        first_page = 1 if self._repair.tick() else None
        if first_page is None and (block := self._verifier.tick()) is not None:
            rank = self._rows_before(block * repository.BUCKET_WIDTH)
            first_page = rank // self.options.page_size + 1
        if first_page is not None:
            self._step(Invalidation(from_page=first_page, totals=self._fresh_totals()))

    def _fresh_totals(self) -> TotalsChange:
        try:
            count = self._db.run(repository.count_orders)
        except pymysql.MySQLError as exc:
            log.warning("cannot count orders; dropping the cached totals", error=str(exc))
            return DROP
        fresh = fresh_until(int(time.time() * 1000), self._totals_ttl())
        return SetTotals(TotalsEntry(fresh, count))

    def _totals_ttl(self) -> int:
        """The API's TTL as it published it (``config`` in Redis); until it has, a freshness so
        short that a TTL mismatch between the two cannot keep totals fresh for long."""
        now = time.monotonic()
        if self._ttl_cache is not None and now - self._ttl_cache[0] < CONFIG_REFRESH_SECONDS:
            return self._ttl_cache[1]
        try:
            published = self.cache.shared_setting("ttl")
        except CacheUnavailable:
            published = None
        ttl = min(self.options.cache_ttl, UNKNOWN_TTL_FRESHNESS)
        if published is not None and published.isdigit() and int(published) > 0:
            ttl = int(published)
        self._ttl_cache = (now, ttl)
        return ttl

    def _rows_before(self, order_id: int) -> int:
        return self._db.run(lambda cursor: repository.rows_before_id(cursor, order_id))

    def _step(self, change: Invalidation, sent: float | None = None) -> None:
        """Apply one step under this term's fencing token. ``sent``: when the newest heartbeat
        the step covers was sent (monotonic); each attempt converts it to Redis' clock with a
        reading of its own, so a retry after a pause or an outage claims no more than the first
        try would have (checkpoint.py). The script repeats the stored checkpoint in every
        message, so a near cache that missed one learns it from the next."""
        fenced = Invalidation(
            pages=change.pages,
            from_page=change.from_page,
            totals=change.totals,
            position=change.position,
            fence=self.lease.token,
        )

        def attempt() -> bool:
            if sent is None:
                return self.cache.invalidate(fenced)
            stamped = dataclasses.replace(fenced, checkpoint_ms=self._checkpoints.vouch(sent))
            return self.cache.invalidate(stamped)

        if not self._retry(attempt):
            metrics.count_invalidator_event("fenced_step")
            raise Fenced(f"fencing token {self.lease.token} is no longer the newest")

    def _count(self, plan: planner.Plan) -> None:
        metrics.count_invalidations("page", len(plan.pages))
        if plan.from_page is not None:
            metrics.count_invalidations("shift")
        if plan.totals_changed:
            metrics.count_invalidations("totals")

    def _retry(self, call: Callable[[], T]) -> T:
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

    # ---- heartbeats ---------------------------------------------------------------------------
    def _beat(self) -> None:
        """Write a heartbeat row while active; remember when each was sent."""
        failing = False
        while not self._stop.wait(self.options.heartbeat_seconds):
            if not self.active.is_set():
                continue
            self._seq += 1
            seq = self._seq
            sent = time.monotonic()
            with self._sent_lock:
                self._sent[seq] = sent
                for old in [s for s, at in self._sent.items() if sent - at > 60]:
                    del self._sent[old]
            try:
                self._heartbeat_db.run(
                    functools.partial(_write_heartbeat, invalidator=self.options.server_id, seq=seq)
                )
                failing = False
            except pymysql.MySQLError as exc:
                metrics.count_invalidator_event("heartbeat_error")
                if not failing:
                    log.warning("heartbeat write failed", error=str(exc))
                failing = True

    def _heartbeat_in(self, changes: list[RowChange]) -> float | None:
        """When the newest of our heartbeats in ``changes`` was sent (None: none of ours)."""
        newest: float | None = None
        for change in changes:
            if change.table != HEARTBEAT_TABLE or change.after is None or len(change.after) != 2:
                continue
            seq = change.after[1]
            with self._sent_lock:
                sent = self._sent.get(seq) if isinstance(seq, int) else None
            if sent is not None and (newest is None or sent > newest):
                newest = sent
        return newest


def _write_heartbeat(cursor: repository.Cursor, *, invalidator: int, seq: int) -> None:
    repository.write_heartbeat(cursor, invalidator, seq)


def build_invalidator(settings: Settings) -> Invalidator:
    """The invalidator's parts from the settings (its composition root)."""
    from service.services import build_redis_cache

    # Off the request path: a longer Redis timeout and a quick breaker retry suit it better.
    cache = build_redis_cache(settings, timeout=max(settings.cache_timeout, 2.0), breaker_reset=0.2)
    options = InvalidatorOptions(
        page_size=settings.page_size,
        server_id=settings.invalidator_server_id,
        cache_ttl=settings.cache_ttl,
        heartbeat_seconds=settings.invalidator_heartbeat,
        recheck_delay=settings.invalidator_recheck_delay,
        stall_after=settings.invalidator_stall_after,
        chunk_rows=settings.invalidator_chunk_rows,
        lease_ttl=settings.invalidator_lease_ttl,
        first_contact_timeout=settings.database_wait_timeout,
        verify_blocks=settings.invalidator_verify_blocks,
        verify_interval=settings.invalidator_verify_interval,
        repair_settle=settings.invalidator_repair_settle,
    )
    return Invalidator(
        settings.database_url,
        cache,
        Connection(settings.database_url, timeout=5),
        Connection(settings.database_url, timeout=2),
        options,
    )


def run_invalidator(settings: Settings) -> None:
    """The process: metrics endpoint, signal handling, then follow until SIGTERM/SIGINT."""
    from service import observability
    from service.observability import logging as service_logging

    service_logging.configure(settings)
    invalidator = build_invalidator(settings)
    observability.start_invalidator_metrics_server(settings, invalidator.healthy)
    metrics.track_invalidation_lag(invalidator.checkpoint_age)

    def stop(_signum: int, _frame: object) -> None:
        invalidator.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        invalidator.run()
    except schema.CascadingForeignKeys as exc:
        log.error("refusing to run", error=str(exc))
        raise SystemExit(2) from None
    except CacheUnavailable:
        if not invalidator.stopping:
            raise
