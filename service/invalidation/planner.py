"""Which cached pages a committed transaction makes wrong: pure logic over ranks.

Pages list orders by id, 10 (ORDERS_PAGE_SIZE) to a page, so an order's page follows from how many
orders have a smaller id (its rank):

- UPDATE of an order changes only the page showing it.
- INSERT moves every later order one place: the page it lands on and all after it change. At the
  tail (the common case) that is just the last page.
- DELETE likewise shifts the page it left and all after it.
- Totals (total_orders, total_pages, the last link) change on every INSERT and DELETE; they are
  cached apart from the pages, so a stream of new orders leaves full pages cached.
- Schema changes and TRUNCATE invalidate everything; TRUNCATE and table swaps also mean the
  block counts must be rebuilt (TRUNCATE fires no triggers, a swapped-in table has none).

``order_changes`` turns the follower's row changes into the ids the planner works on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from service.invalidation.changes import RowChange
from service.invalidation.statements import recount_after
from service.orders.pagination import page_of_rank

ORDERS_TABLE = "orders"

# Past this many updated rows in one transaction, invalidate the span between the first and last
# page instead of locating each row (bulk UPDATEs would otherwise cost one rank query per row).
MAX_LOCATED_UPDATES = 64
# Past this many pages in a span, drop every page from the first instead of listing them.
MAX_LISTED_PAGES = 1000


@dataclass(frozen=True)
class OrderChanges:
    """The ids one transaction touched in the orders table."""

    inserted: frozenset[int] = frozenset()
    updated: frozenset[int] = frozenset()
    deleted: frozenset[int] = frozenset()
    reset: bool = False
    recount: bool = False  # the block counts must be rebuilt before anything is located

    def __bool__(self) -> bool:
        return bool(self.inserted or self.updated or self.deleted or self.reset)


def order_changes(
    changes: Iterable[RowChange], schema: str, table: str = ORDERS_TABLE
) -> OrderChanges:
    """The ids one transaction (or one chunk of it) touched in ``schema.table`` (an id change is
    a move); any reset, or a key that is not one integer, makes it a reset."""
    inserted: set[int] = set()
    updated: set[int] = set()
    deleted: set[int] = set()
    reset = recount = False
    for change in changes:
        if not change.concerns(schema, table):
            continue
        if change.kind == "reset":
            reset = True
            # TRUNCATE fires no DELETE triggers, a table swapped in comes without them, a
            # partition exchanged brings rows nobody counted: see statements.recount_after.
            recount = recount or bool(change.statement and recount_after(change.statement))
            continue
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
            reset = True  # a key we cannot read: be safe
    if reset:
        return OrderChanges(reset=True, recount=recount)
    return OrderChanges(frozenset(inserted), frozenset(updated), frozenset(deleted))


@dataclass
class Plan:
    """What to invalidate: single pages, every page from ``from_page``, and whether the totals
    changed (so the invalidator recounts them)."""

    pages: set[int] = field(default_factory=set)
    from_page: int | None = None
    totals_changed: bool = False

    def shift_from(self, page: int) -> None:
        self.from_page = page if self.from_page is None else min(self.from_page, page)

    def __bool__(self) -> bool:
        return bool(self.pages) or self.from_page is not None or self.totals_changed


def plan(changes: OrderChanges, rows_before: Callable[[int], int], page_size: int) -> Plan:
    """The invalidations for ``changes``. ``rows_before(id)`` counts orders with a smaller id now,
    after the transaction committed (and possibly after later ones, whose own events follow)."""
    result = Plan()
    if changes.reset:
        result.shift_from(1)
        result.totals_changed = True
        return result

    def page_of(order_id: int) -> int:
        return page_of_rank(rows_before(order_id), page_size)

    moved = changes.inserted | changes.deleted
    if moved:
        result.shift_from(page_of(min(moved)))
        result.totals_changed = True

    updated = changes.updated
    if len(updated) <= MAX_LOCATED_UPDATES:
        result.pages.update(page_of(order_id) for order_id in updated)
    else:
        first, last = page_of(min(updated)), page_of(max(updated))
        if last - first + 1 <= MAX_LISTED_PAGES:
            result.pages.update(range(first, last + 1))
        else:
            result.shift_from(first)
    if result.from_page is not None:
        result.pages = {p for p in result.pages if p < result.from_page}
    return result
