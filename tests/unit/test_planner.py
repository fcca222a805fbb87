"""Which pages a committed change invalidates (ranks stand in for MySQL)."""

from __future__ import annotations

import bisect

from service.invalidation.planner import MAX_LOCATED_UPDATES, OrderChanges, plan


def ranks(ids: list[int]):  # type: ignore[no-untyped-def]
    ordered = sorted(ids)
    return lambda order_id: bisect.bisect_left(ordered, order_id)


EXISTING = list(range(1, 101))  # 100 orders, 10 pages of 10


def test_an_update_evicts_only_the_page_showing_the_row() -> None:
    result = plan(OrderChanges(updated=frozenset({25})), ranks(EXISTING), 10)
    assert result.pages == {3}
    assert result.from_page is None
    assert not result.totals_changed


def test_an_insert_at_the_tail_evicts_only_the_last_page_and_the_totals() -> None:
    after = [*EXISTING, 101]
    result = plan(OrderChanges(inserted=frozenset({101})), ranks(after), 10)
    assert result.from_page == 11  # the new last page; pages 1-10 stay cached
    assert result.totals_changed


def test_a_delete_shifts_its_page_and_every_later_one() -> None:
    after = [i for i in EXISTING if i != 42]
    result = plan(OrderChanges(deleted=frozenset({42})), ranks(after), 10)
    assert result.from_page == 5
    assert result.totals_changed


def test_updates_on_pages_covered_by_a_shift_are_not_listed_twice() -> None:
    after = [i for i in EXISTING if i != 42]
    result = plan(
        OrderChanges(deleted=frozenset({42}), updated=frozenset({3, 77})), ranks(after), 10
    )
    assert result.pages == {1}
    assert result.from_page == 5


def test_a_bulk_update_invalidates_the_span_without_locating_each_row() -> None:
    calls: list[int] = []
    rank = ranks(list(range(1, 100_001)))

    def counted(order_id: int) -> int:
        calls.append(order_id)
        return rank(order_id)

    updated = frozenset(range(500, 500 + MAX_LOCATED_UPDATES * 10))
    result = plan(OrderChanges(updated=updated), counted, 10)
    assert len(calls) == 2
    assert result.pages == set(range(50, 50 + MAX_LOCATED_UPDATES + 1))


def test_a_reset_invalidates_everything() -> None:
    result = plan(OrderChanges(reset=True), ranks(EXISTING), 10)
    assert result.from_page == 1
    assert result.totals_changed


def test_no_change_means_nothing_to_do() -> None:
    assert not plan(OrderChanges(), ranks(EXISTING), 10)
