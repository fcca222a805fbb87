"""The invalidator's repairs and count tour as decisions: when it recounts, when it waits, what it
never does, and how many blocks it reads per interval. MySQL is a fake that answers by function
(the real SQL runs in tests/integration/test_schema_drift.py)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from service.invalidation.planner import OrderChanges
from service.invalidation.repair import SchemaRepair
from service.invalidation.verifier import CountVerifier
from service.orders import schema


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeMySQL:
    """``run(work)`` answers from ``answers`` by the repository function ``work`` calls, and
    records every call: a test can say which were never made."""

    def __init__(self, **answers: Any) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def run(self, work: Callable[[Any], Any]) -> Any:
        name = work.func.__name__ if isinstance(work, functools.partial) else work.__name__
        self.calls.append(name)
        answer = self.answers.get(name)
        return answer(work) if callable(answer) else answer


RECOUNT = OrderChanges(reset=True, recount=True)


def repair_with(mysql: FakeMySQL, clock: Clock) -> SchemaRepair:
    return SchemaRepair(mysql.run, settle=1.0, clock=clock)


def test_the_recount_waits_until_no_ddl_came_for_the_settle_time() -> None:
    clock, mysql = Clock(), FakeMySQL(orders_table_exists=True, schema_problems=[])
    repair = repair_with(mysql, clock)
    repair.after_reset(RECOUNT)
    clock.now += 0.6
    repair.after_reset(RECOUNT)  # a second step of the same change: the wait starts over
    clock.now += 0.6
    assert not repair.tick()
    assert "recount_buckets" not in mysql.calls
    clock.now += 0.5
    assert repair.tick()
    assert mysql.calls.count("recount_buckets") == 1
    assert not repair.tick()  # done once


def test_a_missing_orders_table_is_waited_for_never_created() -> None:
    clock, mysql = Clock(), FakeMySQL(orders_table_exists=False, schema_problems=["table orders"])
    repair = repair_with(mysql, clock)
    repair.after_reset(RECOUNT)
    for _ in range(5):
        clock.now += 1.5
        assert not repair.tick()
    assert "recount_buckets" not in mysql.calls
    assert set(mysql.calls) <= {
        "refuse_cascading_foreign_keys",
        "orders_table_exists",
        "schema_problems",
    }
    mysql.answers["orders_table_exists"] = True  # the admin's second step
    clock.now += 1.5
    assert repair.tick()


def test_the_schema_is_checked_every_few_seconds_without_any_ddl() -> None:
    clock, mysql = Clock(), FakeMySQL(schema_problems=["trigger orders_count_insert"])
    repair = repair_with(mysql, clock)
    repair.tick()
    clock.now += 0.5
    repair.tick()
    clock.now += 2.0
    repair.tick()
    assert mysql.calls.count("schema_problems") == 2


def test_a_cascading_foreign_key_stops_at_the_reset() -> None:
    def refuse(_work: object) -> None:
        raise schema.CascadingForeignKeys(["fk (references c, ON DELETE CASCADE, ...)"])

    mysql = FakeMySQL(refuse_cascading_foreign_keys=refuse)
    try:
        repair_with(mysql, Clock()).after_reset(RECOUNT)
    except schema.CascadingForeignKeys:
        return
    raise AssertionError("a cascade must stop the invalidator")


def test_the_tour_reads_a_few_blocks_per_interval_and_repairs_a_drift() -> None:
    blocks = {0: (10, 10), 1: (15, 10), 2: (7, 7)}  # block -> (kept, rows)

    def next_block(work: Any) -> int | None:
        after = work.keywords["after"]
        later = [b for b in sorted(blocks) if b > after]
        return later[0] if later else None

    clock = Clock()
    mysql = FakeMySQL(
        next_block=next_block,
        block_counts=lambda work: blocks[work.keywords["bucket"]],
        repair_block=lambda work: (15, 10),
    )
    verifier = CountVerifier(mysql.run, blocks=2, interval=1.0, clock=clock)
    assert verifier.tick() is None  # block 0 is right
    assert verifier.tick() is None  # not yet: two blocks a second, evenly spaced
    clock.now += 0.5
    assert verifier.tick() == 1  # drifted and repaired
    clock.now += 0.5
    assert verifier.tick() is None  # block 2
    clock.now += 0.5
    assert verifier.tick() is None  # past the last block: the tour starts over
    assert mysql.calls.count("block_counts") == 3
    assert verifier.checked == 3


def test_a_block_written_to_is_checked_before_the_tour_once_per_interval() -> None:
    clock = Clock()
    mysql = FakeMySQL(next_block=lambda work: 0, block_counts=lambda work: (1, 1))
    verifier = CountVerifier(mysql.run, blocks=4, interval=1.0, clock=clock)
    verifier.suspect([5 * 4096 + 1, 5 * 4096 + 2, 9 * 4096])
    assert verifier.tick() is None
    assert mysql.calls == ["block_counts"]  # block 5, no tour lookup
    clock.now += 0.25
    verifier.tick()  # the suspect's turn is once a second: the tour goes on meanwhile
    assert mysql.calls[1:] == ["next_block", "block_counts"]
    clock.now += 0.75
    verifier.tick()
    assert mysql.calls[3:] == ["block_counts"]  # block 9
    assert verifier.checked == 3
