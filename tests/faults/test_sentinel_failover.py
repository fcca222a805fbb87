"""A Redis failover that loses acknowledged invalidations must not leave a stale page served.

Real processes: a primary, a replica whose link is held (tests/support/redis_sentinel.py), three
Sentinels, `orders-service serve` and `invalidate`. An UPDATE's invalidation is acknowledged by
the primary but never reaches the replica; the primary is killed and the replica promoted, by
the Sentinels (the service asks them) or by hand at once (the service's address moves to it).
The new primary holds the page entry from before the UPDATE, an older checkpoint and an older
binlog position. The invalidator must notice (its next step finds another stored position than
it wrote), replay from what the new primary holds, and every page must then equal MySQL; no
response may serve the old row as a hit later than ``ORDERS_CACHE_MAX_LAG`` after the UPDATE.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.faults.conftest import ServiceProcess, Stack, wait_until
from tests.faults.test_invalidator_faults import assert_consistent, sample, scrape
from tests.support.redis_sentinel import MASTER, LyingSentinel, SentinelGroup

pytestmark = [pytest.mark.faults, pytest.mark.slow]

MAX_LAG = 2.0
SLACK = 1.0  # a response's own time on a loaded machine


@pytest.fixture
def sentinel_group() -> Iterator[SentinelGroup]:
    with SentinelGroup.create() as group:
        yield group


def failover_stack(
    stack_factory: Callable[..., Stack], group: SentinelGroup, url: str, **env: str
) -> Stack:
    """serve and invalidate against ``url`` (the Sentinels, or the front that moves)."""
    stack = stack_factory(
        orders=500,
        **env,
        invalidator=False,
        ORDERS_REDIS_URL=url,
        ORDERS_CACHE_MAX_LAG=str(MAX_LAG),
        ORDERS_CACHE_TIMEOUT="0.3",
    )
    stack.redis_server = group.primary
    stack.invalidator = ServiceProcess(
        f"invalidate-{stack.http_port}", ["invalidate"], stack.env, stack.web.log_path.parent
    )
    stack.start_invalidator()
    return stack


@dataclass
class Watch:
    """Every answer for one page after a moment: (monotonic time, X-Cache, the row seen)."""

    answers: list[tuple[float, str, str]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


@contextlib.contextmanager
def watching(stack: Stack, page: int, order_id: int) -> Iterator[Watch]:
    watch, stop = Watch(), threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                response = stack.get(page, timeout=5)
            except Exception as exc:  # noqa: BLE001 - a refused connection is not an answer
                watch.errors.append(exc)
                continue
            if response.status_code != 200:
                continue
            names = [
                o["customer"]["name"] for o in response.json()["orders"] if o["id"] == order_id
            ]
            watch.answers.append(
                (time.monotonic(), response.headers.get("X-Cache", ""), names[0] if names else "")
            )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield watch
    finally:
        stop.set()
        thread.join(timeout=10)


SINGLE_ROW = "UPDATE orders SET customer_name = 'after-failover' WHERE id = 25"


def lose_an_acknowledged_invalidation(
    stack: Stack, group: SentinelGroup, promote: Callable[[], None], update: str = SINGLE_ROW
) -> dict[str, Any]:
    """The scenario; returns its figures. Page 3's entry is cached (and replicated), then the
    replica's link is held, an UPDATE on page 3 is invalidated on the primary only, the primary
    is killed and ``promote`` makes the replica primary."""
    page, order_id = 3, 25
    replica = group.client(group.replica)
    wait_until(lambda: replica.get(stack.key("checkpoint")), 30, "a checkpoint on the replica")
    for number in range(1, 41):
        stack.get(number)
    wait_until(
        lambda: (
            stack.get(page).headers.get("X-Cache") == "HIT"
            and replica.exists(stack.key(f"page:{page}"))
        ),
        30,
        "page 3 cached, on the replica too",
    )
    group.hold_replica_link()
    stack.sql(update)
    updated_at = time.monotonic()
    primary = group.client(group.primary)
    seconds, micros = primary.time()
    committed_ms = seconds * 1000 + micros // 1000
    # Every step for the UPDATE (its recheck too) acknowledged: the checkpoint passed it.
    wait_until(
        lambda: int(primary.get(stack.key("checkpoint")) or 0) > committed_ms,
        30,
        "the primary's checkpoint past the UPDATE",
    )
    assert not primary.exists(stack.key(f"page:{page}"))
    assert replica.exists(stack.key(f"page:{page}")), "the replica must still hold the old entry"
    with watching(stack, page, order_id) as watch:
        group.kill_primary()
        killed_at = time.monotonic()
        promote()
        promoted_at = time.monotonic()
        first_correct = wait_until(
            lambda: stack.page_rows(page)[order_id - 21][1] == "after-failover",
            60,
            "page 3 right on the new primary",
        )
        took = assert_consistent(stack, within=60)
        settled_at = time.monotonic()
        wait_until(lambda: time.monotonic() > settled_at + MAX_LAG, 10, "a while more")
    late_stale = [
        (round(at - updated_at, 2), cache)
        for at, cache, name in watch.answers
        if name != "after-failover" and cache == "HIT" and at > updated_at + MAX_LAG + SLACK
    ]
    assert not late_stale, f"old row served as a hit after the bound: {late_stale[:10]}"
    metrics = scrape(stack.invalidator_port)
    api_failovers = wait_until(
        lambda: sample(scrape(stack.http_port), "orders_redis_failovers_total", '{process="api"}'),
        30,
        "the workers' listeners to notice the new primary",
    )
    return {
        "api_failovers_noticed_after_s": round(api_failovers, 2),
        "promote_s": round(promoted_at - killed_at, 2),
        "first_correct_page_s": round(time.monotonic() - killed_at - took, 2),
        "first_correct_after_promotion_s": round(first_correct, 2),
        "rewinds": sample(metrics, "orders_invalidator_rewinds_total"),
        "failovers": sample(metrics, "orders_redis_failovers_total", '{process="invalidator"}'),
        "answers_watched": len(watch.answers),
    }


def test_a_sentinel_failover_that_loses_the_last_steps_serves_no_stale_page(
    stack_factory: Callable[..., Stack],
    sentinel_group: SentinelGroup,
    report: Callable[[str, dict[str, Any]], None],
) -> None:
    stack = failover_stack(stack_factory, sentinel_group, sentinel_group.sentinel_url)
    figures = lose_an_acknowledged_invalidation(
        stack, sentinel_group, sentinel_group.wait_sentinel_promotion
    )
    report("sentinel_failover_lost_steps", figures)
    assert figures["failovers"], figures  # noticed (a rewind may not be needed then)


def test_a_replica_promoted_by_hand_at_once_serves_no_stale_page(
    stack_factory: Callable[..., Stack],
    sentinel_group: SentinelGroup,
    report: Callable[[str, dict[str, Any]], None],
) -> None:
    stack = failover_stack(stack_factory, sentinel_group, sentinel_group.front_url)
    figures = lose_an_acknowledged_invalidation(
        stack, sentinel_group, sentinel_group.promote_by_hand
    )
    report("hand_promotion_lost_steps", figures)
    assert (figures["rewinds"] or 0) + (figures["failovers"] or 0) >= 1, figures


def test_a_failover_during_a_large_transaction_serves_no_stale_page(
    stack_factory: Callable[..., Stack],
    sentinel_group: SentinelGroup,
    report: Callable[[str, dict[str, Any]], None],
) -> None:
    """One transaction over 40 pages, applied in 10 chunk steps (no position of their own) and
    a last one: all lost, the replica promoted at once. The chunks are in the chain too."""
    stack = failover_stack(
        stack_factory,
        sentinel_group,
        sentinel_group.front_url,
        ORDERS_INVALIDATOR_CHUNK_ROWS="40",
    )
    figures = lose_an_acknowledged_invalidation(
        stack,
        sentinel_group,
        sentinel_group.promote_by_hand,
        "UPDATE orders SET customer_name = 'after-failover' WHERE id <= 400",
    )
    report("failover_during_large_transaction", figures)
    assert (figures["rewinds"] or 0) + (figures["failovers"] or 0) >= 1, figures


def test_a_sentinel_down_and_one_that_lies_are_survived(
    stack_factory: Callable[..., Stack],
    sentinel_group: SentinelGroup,
    report: Callable[[str, dict[str, Any]], None],
) -> None:
    """The service's Sentinel list starts with one that names the replica as the primary and
    one that is down; the client checks ROLE, distrusts the liar, skips the dead one, and the
    failover that loses the last steps is survived as with honest Sentinels."""
    group = sentinel_group
    liar = LyingSentinel(group.replica.port)
    try:
        group.sentinels[0].kill()
        hosts = ",".join(
            [f"127.0.0.1:{liar.port}", *(f"127.0.0.1:{s.port}" for s in group.sentinels)]
        )
        stack = failover_stack(stack_factory, group, f"redis+sentinel://{hosts}/{MASTER}")
        figures = lose_an_acknowledged_invalidation(stack, group, group.wait_sentinel_promotion)
    finally:
        liar.close()
    report("sentinel_down_and_lying", figures)
    assert figures["failovers"], figures
