"""Applying the stream: each batch of the binlog becomes a fenced Redis step (the INVALIDATE
script) that drops the pages it made wrong, replaces the totals and publishes the change to the
workers' near caches; the rechecks (rechecks.py) repeat it and record the position and the
checkpoint. Redis failing means retrying the same step; the position never moves past an
invalidation that did not happen. Replays are harmless: invalidating twice is the same as once.
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pymysql

from service.cache.keys import DROP, KEEP, Invalidation, TotalsChange, strip_step, with_step
from service.cache.store import (
    FENCED,
    LEASE_MS,
    NOT_FOLLOWING,
    CacheUnavailable,
    RedisCache,
)
from service.invalidation import planner
from service.invalidation.changes import ChangeBatch
from service.invalidation.checkpoint import Checkpointer
from service.invalidation.gtid_gate import GtidGate
from service.invalidation.heartbeat import Heartbeats
from service.invalidation.leadership import Lease
from service.invalidation.options import InvalidatorOptions
from service.invalidation.rechecks import RecheckQueue
from service.invalidation.repair import SchemaRepair
from service.invalidation.totals import Totals
from service.invalidation.verifier import CountVerifier
from service.observability import failover_metrics, metrics
from service.observability.logging import get_logger
from service.orders import gtid_waits, repository
from service.orders.database import Connection

T = TypeVar("T")
RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 0.5  # Redis back: pending invalidations land within half a second

log = get_logger("service.invalidation")


class Fenced(Exception):
    """A newer invalidator holds the lease: this one must stop applying and stand by."""


class Rewind(Exception):
    """Redis does not hold what this invalidator's steps wrote (a failover lost the last ones,
    or the primary changed): replay the binlog from the position Redis holds."""


class Steps:
    """One leader's way from batches to Redis steps, under its lease's fencing token."""

    def __init__(
        self,
        schema: str,
        cache: RedisCache,
        database: Connection,
        options: InvalidatorOptions,
        *,
        lease: Lease,
        heartbeats: Heartbeats,
        stop: threading.Event,
    ) -> None:
        self._schema = schema
        self.cache = cache
        self._db = database
        self._page_size = options.page_size
        self._recheck_delay = options.recheck_delay
        self.lease = lease
        self._heartbeats = heartbeats
        self._stop = stop
        self._rechecks = RecheckQueue()
        self._totals = Totals(database, cache, options.cache_ttl)
        self._repair = SchemaRepair(database.run, settle=options.repair_settle)
        self._verifier = CountVerifier(
            database.run, blocks=options.verify_blocks, interval=options.verify_interval
        )
        self._checkpoints = Checkpointer(cache.time)
        self._gtid = GtidGate()
        failover_metrics.watch_failovers("invalidator")
        self.checkpoint_sent: float | None = None
        self.applied = 0
        # The chain (docs/guarantees.md, "Redis failover (Sentinel)"): the ``binlog`` value the
        # last step wrote, which the next one names as the one it follows; numbers from a
        # random start, so no other process's chain has the same values.
        self._chain: str | None = None
        self._step_number = secrets.randbits(48)
        self._primary: str | None = None  # primary_identity() of the primary the steps reach
        self._suspect = True  # check the primary before the next step (a start, an error)

    def new_term(self) -> None:
        """Rechecks left from an earlier term carry positions a newer leader may have passed."""
        self._rechecks.clear()
        self._gtid.new_term()
        self._suspect = True

    def follow(self, stored: str | None) -> None:
        """The next step follows ``stored`` (the ``binlog`` value read; None: nothing stored)."""
        self._chain = stored

    def handle(self, batch: ChangeBatch) -> None:
        """One batch: its pages dropped now; the recheck, position and checkpoint later."""
        changes = planner.order_changes(batch.changes, self._schema)
        sent = None if batch.partial else self._heartbeats.sent_in(batch.changes)
        position = None if batch.partial else batch.position
        now = time.monotonic()
        if changes:
            plan, totals = self._plan(changes)
            delay = self._recheck_delay
            self.step(
                Invalidation(
                    pages=frozenset(plan.pages),
                    from_page=plan.from_page,
                    totals=totals,
                    position=position.stored() if position is not None and not delay else None,
                    gtid=self._gtid.drop_state(batch),
                ),
                sent=None if delay else sent,
            )
            self._count(plan)
            if not delay:
                self._checkpointed(sent)
            else:
                self._rechecks.schedule(now + delay, plan, position, sent)
        elif position is not None and (sent is not None or not batch.idle):
            self._rechecks.progress(now, position, sent)
        self.applied += 1 if changes else 0

    def drain(self, now: float) -> None:
        """Apply every recheck that is due, merged into one step."""
        due = self._rechecks.due(now)
        if due is None:
            return
        self.step(
            Invalidation(
                pages=due.pages,
                from_page=due.from_page,
                totals=self._totals.fresh() if due.totals_changed else KEEP,
                position=due.position.stored() if due.position is not None else None,
                gtid=self._gtid.progress_state(due.position),
            ),
            sent=due.heartbeat_sent,
        )
        self._checkpointed(due.heartbeat_sent)

    def _checkpointed(self, sent: float | None) -> None:
        if sent is not None:
            self.checkpoint_sent = max(self.checkpoint_sent or sent, sent)

    def _plan(self, changes: planner.OrderChanges) -> tuple[planner.Plan, TotalsChange]:
        try:
            if changes.reset:
                metrics.count_invalidator_event("reset")
                self._repair.after_reset(changes)
            self._verifier.suspect(changes.inserted | changes.deleted)
            plan = planner.plan(changes, self._rows_before, self._page_size)
            totals = self._totals.fresh() if plan.totals_changed else KEEP
        except pymysql.MySQLError as exc:
            # Cannot locate the rows: drop every page and the totals, which is always correct.
            log.warning("cannot rank changed rows; invalidating everything", error=str(exc))
            plan, totals = planner.Plan(from_page=1, totals_changed=True), DROP
        return plan, totals

    def after_promotion(self) -> None:
        """A replica promoted to MySQL primary may lack the old primary's last commits (with
        asynchronous replication MySQL loses them): a page filled from one, which this
        invalidator had not read, holds a row MySQL no longer has, and no drop will come for
        it. Every commit before the checkpoint was read, so it is in the history the new
        primary was checked to hold; a fill reads MySQL less than a lease's length after its
        read time. So the pages filled since the checkpoint, less that, are dropped (with the
        totals), and the rest of the cache is kept."""
        checkpoint = self.retry(self.cache.checkpoint)
        since = (checkpoint or 0) - LEASE_MS
        pages = self.retry(lambda: self.cache.filled_since(since))
        self.step(Invalidation(pages=frozenset(pages), totals=DROP))
        log.warning("pages filled since the last checkpoint dropped", pages=len(pages))

    def check_counts(self) -> None:
        """Counts rebuilt after DDL (repair) or a drifted block repaired (verifier): the pages
        filled from the old counts, from that block's first order on, and the totals go."""
        first_page = 1 if self._repair.tick() else None
        if first_page is None and (block := self._verifier.tick()) is not None:
            rank = self._rows_before(block * repository.BUCKET_WIDTH)
            first_page = rank // self._page_size + 1
        if first_page is not None:
            self._gtid.hold(self._primary_state())
            totals = self._totals.fresh()
            self.step(
                Invalidation(from_page=first_page, totals=totals, gtid=gtid_waits.PRIMARY_ONLY)
            )

    def _primary_state(self) -> str:
        """The primary's GTID state now, after the repair ('' when it has none to tell): in
        the stream's dialect, or, before the stream showed one, whichever the server answers."""
        known = self._gtid.dialect
        for dialect in (known,) if known else gtid_waits.DIALECTS:
            statement = gtid_waits.executed_statement(dialect)
            try:
                return str(self._db.run(functools.partial(_one, statement=statement)) or "")
            except pymysql.MySQLError:
                if known:
                    raise
        return ""

    def _rows_before(self, order_id: int) -> int:
        return self._db.run(lambda cursor: repository.rows_before_id(cursor, order_id))

    def step(self, change: Invalidation, sent: float | None = None) -> None:
        """Apply one step under this term's fencing token, following the chain. ``sent``: when
        the newest heartbeat the step covers was sent (monotonic); each attempt converts it to
        Redis' clock with a reading of its own, so a retry after a pause or an outage claims no
        more than the first try would have (checkpoint.py). The script repeats the stored
        checkpoint in every message, so a near cache that missed one learns it from the next.

        Every step writes ``binlog``: its own position, or the last one with the step's number
        (a step without a position, such as a large transaction's chunk, is in the chain too).
        A step refused because Redis holds another value raises ``Rewind``."""
        self._step_number += 1
        position = change.position or (strip_step(self._chain) if self._chain else None)
        written = with_step(position, self._step_number) if position else None

        def attempt() -> int:
            self._check_primary()
            fenced = dataclasses.replace(
                change, position=written, fence=self.lease.token, expected=self._chain
            )
            if sent is not None:
                fenced = dataclasses.replace(fenced, checkpoint_ms=self._checkpoints.vouch(sent))
            return self.cache.apply_step(fenced)

        status = self.retry(attempt)
        if status == FENCED:
            metrics.count_invalidator_event("fenced_step")
            raise Fenced(f"fencing token {self.lease.token} is no longer the newest")
        if status == NOT_FOLLOWING:
            failover_metrics.count_rewind()
            raise Rewind("the stored position is not the one the last step wrote")
        if written is not None:
            self._chain = written

    def _check_primary(self) -> None:
        """After a start or a Redis error: is it still the same primary? If not, take a new
        fence there (or stand by) and rewind. Raises CacheUnavailable (then retried)."""
        if not self._suspect:
            return
        primary = self.cache.primary_identity()
        if self._primary is not None and self._primary != primary:
            # A new token there before any other step; an error here is retried from the top.
            if not self.lease.refence():
                raise Fenced("the lease is not ours on the new Redis primary")
            self._primary, self._suspect = primary, False
            failover_metrics.count_failover("invalidator")
            log.warning("the Redis primary changed: re-fenced, replaying from its position")
            raise Rewind("the Redis primary changed")
        self._primary, self._suspect = primary, False

    def _count(self, plan: planner.Plan) -> None:
        metrics.count_invalidations("page", len(plan.pages))
        if plan.from_page is not None:
            metrics.count_invalidations("shift")
        if plan.totals_changed:
            metrics.count_invalidations("totals")

    def retry(self, call: Callable[[], T]) -> T:
        """Redis calls are repeated until they succeed (or we are stopped): nothing is skipped."""
        delay = RETRY_SECONDS
        while True:
            try:
                return call()
            except CacheUnavailable as exc:
                if self._stop.is_set():
                    raise
                self._suspect = True  # a failover may be why: check the primary first
                log.warning("redis unavailable; retrying", error=str(exc), retry_in=delay)
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)


def _one(cursor: Any, statement: str) -> Any:
    cursor.execute(statement)
    row = cursor.fetchone()
    return row[0] if row else None
