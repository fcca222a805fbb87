"""The recheck queue on a fake clock: what is due when, and how due rechecks merge."""

from __future__ import annotations

from service.invalidation.changes import BinlogPosition
from service.invalidation.planner import Plan
from service.invalidation.rechecks import RecheckQueue


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def position(offset: int) -> BinlogPosition:
    return BinlogPosition("binlog.000001", offset)


def test_a_recheck_is_due_only_once_its_delay_has_passed() -> None:
    clock, queue = FakeClock(), RecheckQueue()
    queue.schedule(clock.now + 0.1, Plan(pages={3}), position(10), sent=99.0)
    assert queue.due(clock.advance(0.05)) is None
    assert len(queue) == 1
    due = queue.due(clock.advance(0.05))
    assert due is not None
    assert (due.pages, due.from_page, due.totals_changed) == (frozenset({3}), None, False)
    assert (due.position, due.heartbeat_sent) == (position(10), 99.0)
    assert len(queue) == 0
    assert queue.due(clock.advance(1)) is None


def test_due_rechecks_merge_into_one_step_below_the_lowest_shift() -> None:
    clock, queue = FakeClock(), RecheckQueue()
    queue.schedule(clock.now, Plan(pages={1, 7}), position(10), sent=98.0)
    queue.schedule(clock.now, Plan(pages={2}, from_page=5, totals_changed=True), position(20), None)
    queue.schedule(clock.now, Plan(from_page=3), None, sent=None)
    queue.schedule(clock.now + 1, Plan(pages={9}), position(40), sent=99.5)
    due = queue.due(clock.now)
    assert due is not None
    assert due.pages == frozenset({1, 2})  # 7 lies past the shift from page 3
    assert due.from_page == 3
    assert due.totals_changed
    assert due.position == position(20)  # the newest one recorded, not cleared by None
    assert due.heartbeat_sent == 98.0
    assert len(queue) == 1


def test_progress_without_changes_waits_for_the_recheck_before_it() -> None:
    clock, queue = FakeClock(), RecheckQueue()
    queue.progress(clock.now, position(5), sent=97.0)  # nothing waiting: due at once
    first = queue.due(clock.now)
    assert first is not None
    assert first.position == position(5)
    assert not first.pages
    queue.schedule(clock.now + 0.1, Plan(pages={4}), position(10), None)
    queue.progress(clock.now, position(15), sent=99.0)  # never recorded ahead of the recheck
    assert queue.due(clock.advance(0.05)) is None
    due = queue.due(clock.advance(0.05))
    assert due is not None
    assert (due.pages, due.position, due.heartbeat_sent) == (frozenset({4}), position(15), 99.0)


def test_a_new_term_forgets_every_recheck() -> None:
    clock, queue = FakeClock(), RecheckQueue()
    queue.schedule(clock.now, Plan(pages={1}), position(10), None)
    queue.clear()
    assert queue.due(clock.advance(10)) is None
