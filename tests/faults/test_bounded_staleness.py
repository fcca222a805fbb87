"""ORDERS_CACHE_MAX_LAG end to end: whatever stops invalidation, no HIT or MISS serves data more
than the bound behind MySQL, and afterwards every page agrees with MySQL (the checker of
tests.support.consistency).

Real processes (`orders-service serve` with 2 gunicorn workers and their near caches, and
`orders-service invalidate`) against a throwaway binlog MariaDB and Redis. Before the bound, each
of these scenarios left the write hidden behind HITs until the TTL (an hour) or, for Redis'
CLIENT PAUSE WRITE, for the whole pause.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.faults.conftest import Stack
from tests.faults.staleness import (
    MARGIN,
    MAX_LAG,
    ORDERS,
    assert_bounded,
    check_every_page,
    run_writes_under_reads,
    warm,
)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.slow]


def test_with_no_invalidator_at_all_every_answer_is_within_the_bound(
    stack_factory: Callable[..., Stack], report: Callable[[str, dict[str, Any]], None]
) -> None:
    stack = stack_factory(orders=ORDERS, invalidator=False, ORDERS_CACHE_MAX_LAG=str(MAX_LAG))
    warm(stack)
    ready = requests.get(f"{stack.base_url}/readyz", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["invalidation"]["status"] == "absent"
    writes, reads, rate = run_writes_under_reads(stack, seconds=12, every=0.4)
    figures = assert_bounded(writes, reads)
    figures["mysql_queries_per_s"] = round(rate, 1)
    figures["settled_s"] = round(check_every_page(stack), 2)
    report("bound_no_invalidator", figures)
    assert figures["hit_rate"] > 0.3  # the cache still works: most reads are within the bound


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_a_dead_or_stopped_invalidator_hides_no_write_past_the_bound(
    how: str,
    stack_factory: Callable[..., Stack],
    report: Callable[[str, dict[str, Any]], None],
) -> None:
    stack = stack_factory(orders=ORDERS, ORDERS_CACHE_MAX_LAG=str(MAX_LAG))
    assert stack.invalidator is not None
    warm(stack)
    stack.invalidator.signal_group(getattr(signal, how))
    try:
        writes, reads, rate = run_writes_under_reads(stack, seconds=8, every=0.4)
        figures = assert_bounded(writes, reads)
        figures["mysql_queries_per_s"] = round(rate, 1)
        figures["settled_s"] = round(check_every_page(stack), 2)
        report(f"bound_invalidator_{how}", figures)
    finally:
        if how == "SIGSTOP":
            stack.invalidator.signal_group(signal.SIGCONT)
    if how == "SIGSTOP":
        check_every_page(stack)  # and it catches up without breaking anything


def test_redis_paused_for_writes_does_not_hide_a_write_behind_hits(
    stack_factory: Callable[..., Stack], report: Callable[[str, dict[str, Any]], None]
) -> None:
    """Issue 10 case 8: CLIENT PAUSE WRITE (what a failover does) for 8 s. The invalidator cannot
    write, the checkpoint stops, and entries past the bound are refilled from MySQL."""
    stack = stack_factory(orders=ORDERS, ORDERS_CACHE_MAX_LAG=str(MAX_LAG))
    warm(stack)
    order_id = stack.sql_page(3)[0][0]
    paused_at = time.monotonic()
    stack.redis.execute_command("CLIENT", "PAUSE", "8000", "WRITE")
    try:
        stack.db.cli(f"UPDATE orders SET customer_name = 'paused-write' WHERE id = {order_id}")

        def shown() -> bool:
            return all(
                stack.get(3).json()["orders"][0]["customer"]["name"] == "paused-write"
                for _ in range(4)
            )

        visible_after = wait_for(shown, 8, "the write to show while Redis is paused")
        still_paused = time.monotonic() - paused_at < 8
    finally:
        stack.redis.execute_command("CLIENT", "UNPAUSE")
    assert still_paused, "the write only showed once the pause was over"
    assert visible_after <= MAX_LAG + MARGIN
    settled = check_every_page(stack)
    report(
        "bound_redis_client_pause_write",
        {"visible_after_s": round(visible_after, 3), "settled_s": round(settled, 2)},
    )


def test_after_mysql_restarts_every_page_agrees_with_mysql(
    stack_factory: Callable[..., Stack], report: Callable[[str, dict[str, Any]], None]
) -> None:
    stack = stack_factory(orders=ORDERS, ORDERS_CACHE_MAX_LAG=str(MAX_LAG))
    warm(stack)
    stack.mariadb.restart()
    order_id = stack.sql_page(5)[0][0]
    stack.db.cli(f"UPDATE orders SET customer_name = 'after-restart' WHERE id = {order_id}")
    report("consistency_after_mysql_restart", {"settled_s": round(check_every_page(stack), 2)})
