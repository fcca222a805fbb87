"""Repairs that never fight an operator: what the invalidator does about the schema after DDL.

After a statement that may have changed orders rows without row events (TRUNCATE, a partition
exchanged, a table swapped in, a trigger dropped: ``statements.recount_after``) the block counts
no longer follow the rows and must be rebuilt. The rules:

- Only ``orders-service migrate`` creates tables and triggers. The invalidator never does: an
  admin's two-step rename (``orders`` to ``orders_old``, then ``orders_new`` to ``orders`` a few
  seconds later) once found an empty ``orders`` re-created in between, and its second step
  failed (1050) while the API served 0 orders.
- The recount waits until the schema has settled: ``orders`` present (a rename's first step
  leaves none), and no DDL on orders for ``settle`` seconds (ORDERS_INVALIDATOR_REPAIR_SETTLE,
  0 by default: a TRUNCATE's counts are rebuilt before its reset computes the totals; set it for
  changes that pass through an ``orders`` that is not the final one). Until then it says what it
  waits for (``orders_invalidator_events_total{kind="repair_waiting"}`` and a log line).
- Every ``CHECK_SECONDS`` the schema is checked (``catalog.schema_problems``: a missing table
  or counting trigger, a cascading foreign key, an unexpected key column); what is wrong is in
  ``orders_invalidator_schema_problems`` and logged with what ``migrate`` would restore, within
  seconds of the change rather than at the next migration. /readyz asks the same question.
- A cascading foreign key added while running stops the invalidator (``CascadingForeignKeys``):
  its changes never reach the binlog, so the cache cannot follow them.

Under least privilege (service/orders/roles.py) the invalidator may rewrite the counts but not
make DDL; a recount it may not make is reported (``repair_denied``) and left to ``migrate``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pymysql

from service.invalidation.planner import OrderChanges
from service.observability import metrics
from service.observability.logging import get_logger
from service.orders import catalog, repository, schema

CHECK_SECONDS = 2.0  # how soon a missing trigger or a new cascade is noticed
# MySQL's "command denied" family: a DDL or a write the role was not granted.
ACCESS_DENIED = frozenset((1142, 1143, 1044, 1227))
log = get_logger("service.invalidation.repair")


class SchemaRepair:
    """``after_reset()`` notes a DDL on orders; ``tick()`` rebuilds the counts once it settled
    (True: the caller resets the cache, its pages were filled from the old counts) and checks
    the schema every ``CHECK_SECONDS``."""

    def __init__(
        self,
        run: Callable[[Callable[[Any], Any]], Any],
        *,
        settle: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run = run
        self._settle = settle
        self._clock = clock
        self._changed_at = float("-inf")
        self._recount_due = False
        self._waiting = False
        self._checked_at = float("-inf")
        self._problems: list[str] = []

    def after_reset(self, changes: OrderChanges) -> None:
        """A reset of orders: cascades stop us at once; a recount waits for the schema to settle
        (``orders`` present, and no DDL for ``settle`` seconds)."""
        self._run(schema.refuse_cascading_foreign_keys)
        self._changed_at = self._clock()
        self._recount_due = self._recount_due or changes.recount
        self._checked_at = float("-inf")  # look again once settled
        if self._settle <= 0:
            # No quiet period asked for: rebuild now, so the reset's totals are already right.
            self.tick()

    def tick(self) -> bool:
        try:
            return self._tick(self._clock())
        except pymysql.MySQLError as exc:
            # A table mid-swap, a row the counts cannot hold (a negative id): try again later.
            log.warning("cannot check or repair the schema now", error=str(exc))
            self._changed_at = self._clock()
            return False

    def _tick(self, now: float) -> bool:
        settled = now - self._changed_at >= self._settle
        if settled and now - self._checked_at >= CHECK_SECONDS:
            self._checked_at = now
            self._check()
        if not (self._recount_due and settled):
            return False
        if not self._run(catalog.orders_table_exists):
            self._wait(
                "orders is missing (a rename or a swap under way?): it is not re-created "
                "here, only by `orders-service migrate`; the recount waits for it"
            )
            return False
        try:
            self._run(repository.recount_buckets)
        except pymysql.err.OperationalError as exc:
            if not exc.args or exc.args[0] not in ACCESS_DENIED:
                raise
            self._recount_due = False
            metrics.count_invalidator_event("repair_denied")
            log.error(
                "the block counts need a rebuild and this MySQL user may not make it; "
                "run `orders-service recount` as the migrate role",
                error=str(exc.args[-1]),
            )
            return False
        self._recount_due = self._waiting = False
        log.info("block counts rebuilt after a schema change")
        return True

    def _wait(self, why: str) -> None:
        if not self._waiting:
            self._waiting = True
            metrics.count_invalidator_event("repair_waiting")
            log.warning("a repair is waiting", why=why)

    def _check(self) -> None:
        problems = self._run(catalog.schema_problems)
        metrics.set_invalidator_gauge("schema_problems", len(problems))
        if problems and problems != self._problems:
            log.error(
                "the schema has problems the block counts or the binlog cannot follow; "
                "`orders-service migrate` would restore what is missing (it refuses cascades "
                "and key columns it cannot count, and says what to change)",
                problems=problems,
            )
        elif self._problems and not problems:
            log.info("the schema problems are gone")
        self._problems = problems
