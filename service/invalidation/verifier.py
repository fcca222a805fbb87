"""Block counts verified, not trusted: a slow tour that compares each block's count with its rows.

The counts in ``order_buckets`` are kept by triggers, and a trigger can be dropped, a cascade or
a partition operation can change rows without firing one, and a trigger can be wrong (the
``UPDATE IGNORE`` collision of issue 18). Pages and totals read from a wrong count are wrong
even on a MISS, and the inspector, which compares the cache with MySQL, cannot see it. So the
active invalidator walks the blocks (a block is a range of ``BUCKET_WIDTH`` ids): ``blocks`` of
them every ``interval`` seconds, evenly spaced (ORDERS_INVALIDATOR_VERIFY_BLOCKS, _INTERVAL), so
the invalidation steps it runs between wait for at most one block's count. Each block is checked
with one statement (one read view, so a commit in between cannot look like a drift). A block
found wrong is recounted under locks that hold its writers off, counted
(``orders_invalidator_events_total{kind="count_drift_repaired"}``) and logged, and every page
from that block's first order on is invalidated with the totals.

Besides the tour, a block that rows were just inserted into, deleted from or moved across (the
invalidator hands their ids to ``suspect()``) is checked first, one per interval: a drift made
by writes (a missing or wrong trigger) is repaired within about a second, not a tour.

Cost on MySQL: per interval, ``blocks`` times (one index lookup for the next block and one
range count of at most 4096 ids), plus one range count while writes come in; a repair adds one
locking transaction. A full tour of N blocks takes N / blocks intervals: that bounds the time
from any other drift to its repair.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from typing import Any

import pymysql

from service.observability import metrics
from service.observability.logging import get_logger
from service.orders import repository

MAX_SUSPECTS = 256  # blocks remembered between checks; the oldest are left to the tour
log = get_logger("service.invalidation.verifier")


class CountVerifier:
    """``tick()`` checks the next block when its time has come; returns the block if it was
    repaired (its pages must be invalidated), else None."""

    def __init__(
        self,
        run: Callable[[Callable[[Any], Any]], Any],
        *,
        blocks: int,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run = run
        self._blocks = blocks
        self._interval = interval
        self._clock = clock
        self._due = clock()
        self._after = -1  # the last block checked; -1: the tour starts over
        self._suspects: dict[int, None] = {}  # blocks written to lately, oldest first
        self._suspect_due = clock()
        self.checked = 0  # blocks compared so far (for the cost figures)

    def suspect(self, order_ids: Iterable[int]) -> None:
        """Blocks that rows were just inserted into, deleted from or moved across: where a
        trigger that is missing or wrong makes its drift. One of them is checked per
        ``interval`` besides the tour, so such a drift is repaired within about a second."""
        for order_id in order_ids:
            self._suspects[order_id // repository.BUCKET_WIDTH] = None
        while len(self._suspects) > MAX_SUSPECTS:
            del self._suspects[next(iter(self._suspects))]

    def tick(self) -> int | None:
        """One block of the tour per ``interval / blocks`` seconds and one suspect per
        ``interval``: the cost is spread out, so the invalidation it runs between is never held
        up by more than one block's count."""
        try:
            block, written = self._pick(self._clock())
            return None if block is None else self._check(block, written=written)
        except pymysql.MySQLError as exc:
            # A lock wait that gave up, a table being swapped: the next round tries again.
            log.warning("cannot verify the block counts now", error=str(exc))
            return None

    def _pick(self, now: float) -> tuple[int | None, bool]:
        """The suspect whose turn it is (and True), else the tour's next block when due."""
        if self._suspects and now >= self._suspect_due:
            self._suspect_due = now + self._interval
            block = next(iter(self._suspects))
            del self._suspects[block]
            return block, True
        if now < self._due:
            return None, False
        step = self._interval / self._blocks
        self._due = max(self._due + step, now - step)  # keeps the pace between coarse ticks
        found: int | None = self._run(functools.partial(repository.next_block, after=self._after))
        self._after = -1 if found is None else found  # None: the tour starts over
        return found, False

    def _check(self, block: int, *, written: bool = False) -> int | None:
        self.checked += 1
        kept, real = self._run(functools.partial(repository.block_counts, bucket=block))
        if kept == real or not self._repair(block):
            return None
        if written:
            # Seen only by its effect: the invalidator's MySQL user may not see triggers.
            log.error(
                "a block that writes just touched had drifted: a counting trigger is likely "
                "missing or wrong, or a writer skipped the count; `orders-service migrate` "
                "restores the triggers",
                block=block,
            )
        return block

    def _repair(self, block: int) -> bool:
        fixed = self._run(functools.partial(repository.repair_block, bucket=block))
        if fixed is None:
            return False  # a writer's commit settled it between the check and the lock
        was, now = fixed
        metrics.count_invalidator_event("count_drift_repaired")
        log.warning(
            "a block count had drifted from its rows; repaired",
            block=block,
            first_id=block * repository.BUCKET_WIDTH,
            counted=was,
            rows=now,
        )
        return True
