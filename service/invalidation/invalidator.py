"""``orders-service invalidate``: the binlog in, cache invalidations out, position saved after.

Jobs, one module each: the leader loop here (wait for MySQL, hold the lease, follow, start
over), the stream (``follower``), the steps it becomes (``steps``), the rechecks that record the
position and checkpoint after (``rechecks``), the heartbeats that prove progress end to end
(``heartbeat``), the totals and their TTL (``totals``), schema repair (``repair``) and count
verification (``verifier``). A restart, even after SIGKILL, replays from the last position
recorded, which is never past an invalidation that did not happen.

One invalidator is active at a time: it holds a lease in Redis whose fencing token every step
carries, and the script refuses a step whose token is no longer the newest (``leadership``).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pymysql

from service.cache.keys import DROP, Invalidation, strip_step
from service.cache.store import CacheUnavailable, RedisCache
from service.config import DatabaseURL
from service.invalidation import planner
from service.invalidation.changes import BinlogPosition
from service.invalidation.follower import BinlogFollower
from service.invalidation.heartbeat import HEARTBEAT_TABLE, Heartbeats
from service.invalidation.leadership import Lease
from service.invalidation.mysql_source import (
    PositionUnavailable,
    check_server,
    current_position,
    foreign_history,
    server_info,
)
from service.invalidation.options import InvalidatorOptions
from service.invalidation.steps import Fenced, Rewind, Steps
from service.observability import metrics
from service.observability.logging import get_logger
from service.orders import gtid_waits, schema
from service.orders.database import Connection

T = TypeVar("T")
STREAM_HEARTBEAT_SECONDS = 0.1  # the server's idle heartbeat: how late a due recheck can be

log = get_logger("service.invalidation")


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
        self._started = time.monotonic()
        self._progress_at = time.monotonic()
        self.lease = Lease(cache, options.lease_ttl)
        self.active = threading.Event()
        self._heartbeats = Heartbeats(
            heartbeat_database,
            options.server_id,
            options.heartbeat_seconds,
            active=self.active,
            stop=self._stop,
        )
        self._steps = Steps(
            source.database,
            cache,
            database,
            options,
            lease=self.lease,
            heartbeats=self._heartbeats,
            stop=self._stop,
        )

    @property
    def applied(self) -> int:
        """Batches that changed something in the orders table, applied so far."""
        return self._steps.applied

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
        sent = self._steps.checkpoint_sent
        since = sent if sent is not None else self._started
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
        metrics.set_invalidator_gauge("gtid_positions", 1 if info.gtids else 0)
        if not info.gtids:
            log.warning(
                "GTIDs are off: positions are file and offset of this one server, so a replica "
                "promoted to primary is a new history (the cache is cleared)",
                gtid_mode=info.settings.get("gtid_mode"),
            )
        self._db.run(schema.refuse_cascading_foreign_keys)
        self._heartbeats.start()
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
        position = self._resume()
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
                position = self._resume("the stored position is no longer on the server")
            except Rewind as exc:
                log.warning("replaying from the position Redis holds", reason=str(exc))
                position = self._resume()
            finally:
                self._follower.close()

    def _resume(self, fresh: str | None = None) -> BinlogPosition:
        """Where to follow from: what Redis holds (or now, after clearing, when ``fresh`` says
        why), with the rechecks of the stream left behind dropped; again while Redis refuses
        (``Rewind``: its primary changed meanwhile)."""
        while True:
            self._steps.new_term()
            try:
                return self._start_fresh(fresh) if fresh else self._start_position()
            except Rewind as exc:
                log.warning("replaying from the position Redis holds", reason=str(exc))

    def _follow(self, follower: BinlogFollower, position: BinlogPosition) -> BinlogPosition:
        unreadable = changes = 0
        for batch in follower:
            if self._stop.is_set():
                break
            if not self.lease.held():
                raise Fenced("the lease lapsed")
            self._progress()
            while follower.unreadable_events > unreadable:
                unreadable += 1
                metrics.count_invalidator_event("unreadable_event")
            if follower.watch.primary_changes > changes:
                metrics.count_primary_change(follower.watch.primary_changes - changes)
                changes = follower.watch.primary_changes
                self._steps.after_promotion()
            self._steps.handle(batch)
            self._steps.drain(time.monotonic())
            self._steps.check_counts()
            if not batch.partial:
                position = batch.position
        self._steps.drain(float("inf"))
        return position

    # ---- positions ---------------------------------------------------------------------------
    def _start_position(self) -> BinlogPosition:
        """Where we left off, if it is this server's history; otherwise now, after dropping
        everything, since what happened while nobody followed the binlog is unknown."""
        stored = self._steps.retry(self.cache.stored_chain)
        self._steps.follow(stored)
        if not stored:
            return self._start_fresh("no stored binlog position")
        try:
            position = BinlogPosition.parse(strip_step(stored))
        except ValueError:
            return self._start_fresh(f"unreadable stored position {stored!r}")
        reason = foreign_history(self.source, position)
        if reason is not None:
            return self._start_fresh(f"stored position {position} not resumable: {reason}")
        here = server_info(self.source).identity
        if position.server != here:  # a promoted replica that holds our history
            metrics.count_primary_change()
            log.warning(
                "the database is another server now; resuming by GTID",
                stored_on=position.server,
                now=here,
                gtid=position.gtid,
            )
            self._steps.after_promotion()
        return position

    def _start_fresh(self, reason: str) -> BinlogPosition:
        position = current_position(self.source)
        # ``-``: fills read the primary until the stream records a state of its own (a commit
        # between the old state and this position would otherwise pass a replica's wait).
        clearing = Invalidation(
            from_page=1, totals=DROP, position=position.stored(), gtid=gtid_waits.PRIMARY_ONLY
        )
        self._steps.step(clearing)
        metrics.count_invalidator_event("fresh_start")
        log.warning("cache cleared, following from now", reason=reason, position=str(position))
        return position


def serve(invalidator: Invalidator) -> None:
    """Follow until SIGTERM/SIGINT; cascading foreign keys on orders end the process (exit 2)."""

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
