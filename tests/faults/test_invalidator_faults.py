"""The invalidator stopped, poisoned, paused behind a standby, or stalled: real processes
(`orders-service serve` and `orders-service invalidate`) against a throwaway binlog MariaDB and
Redis. Each scenario ends with the checker: every page and the totals the API serves (fresh
connections, so both workers' near caches are looked at) equal what MySQL holds."""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.faults.conftest import ServiceProcess, Stack, wait_until
from tests.faults.traffic import INSERT_SQL, assert_consistent, disagreeing, sample, scrape
from tests.support.servers import free_port

pytestmark = [pytest.mark.faults, pytest.mark.slow]


@contextlib.contextmanager
def writes_and_reads(stack: Stack, pages: range) -> Iterator[list[int]]:
    """A writer (updates, some inserts, some deletes) and two readers re-caching pages."""
    stop = threading.Event()
    committed = [0]
    errors: list[BaseException] = []

    def write() -> None:
        rng = random.Random(11)
        try:
            with contextlib.closing(stack.db.connect()) as conn, conn.cursor() as cur:
                while not stop.is_set():
                    committed[0] += 1
                    n = committed[0]
                    if n % 10 == 0:
                        cur.execute(INSERT_SQL.format(name=f"s{n}"))
                    elif n % 17 == 0:
                        cur.execute("DELETE FROM orders WHERE id = %s", (rng.randint(1, 900),))
                    else:
                        cur.execute(
                            "UPDATE orders SET customer_name = %s WHERE id = %s",
                            (f"s{n}", rng.randint(1, 900)),
                        )
                    time.sleep(0.02)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    def read() -> None:
        rng = random.Random(12)
        try:
            while not stop.is_set():
                stack.get(rng.choice(pages))
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=write), *(threading.Thread(target=read) for _ in range(2))]
    for thread in threads:
        thread.start()
    try:
        yield committed
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not errors, errors


def test_invalidator_paused_then_resumed_leaves_every_page_right(
    stack_factory: Callable[..., Stack], report: Callable[[str, dict[str, Any]], None]
) -> None:
    stack = stack_factory(orders=1000)
    assert stack.invalidator is not None
    pages = range(1, 101)
    with writes_and_reads(stack, pages) as committed:
        time.sleep(1)
        stack.invalidator.signal_group(signal.SIGSTOP)
        at_pause = committed[0]
        time.sleep(3)  # writes go on; readers re-cache pages the paused invalidator misses
        stale = len(disagreeing(stack))
        stack.invalidator.signal_group(signal.SIGCONT)
        time.sleep(1)
        during = committed[0] - at_pause
    caught_up = assert_consistent(stack)
    report(
        "invalidator_sigstop",
        {
            "writes_while_paused": during,
            "pages_stale_while_paused": stale,
            "catch_up_s": round(caught_up, 2),
        },
    )
    assert during > 20


def test_a_poisoned_row_in_another_table_never_stops_the_invalidator(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory(orders=1000)
    assert stack.invalidator is not None
    stack.db.cli(
        "CREATE TABLE notes (id INT PRIMARY KEY, body VARCHAR(20)) CHARACTER SET latin1; "
        "INSERT INTO notes VALUES (1, CONCAT('caf', X'81'));"
    )
    with writes_and_reads(stack, range(1, 101)):
        time.sleep(2)
        stack.db.cli("UPDATE notes SET body = CONCAT('th', X'81', 'e') WHERE id = 1;")
        time.sleep(2)
    assert stack.invalidator.running
    assert_consistent(stack)
    # A restart resumes past the poisoned events too.
    stack.invalidator.kill()
    stack.start_invalidator()
    stack.db.cli("UPDATE orders SET customer_name = 'after restart' WHERE id = 42;")
    assert_consistent(stack)


def test_a_standby_takes_over_a_paused_leader_which_then_applies_nothing(
    stack_factory: Callable[..., Stack], report: Callable[[str, dict[str, Any]], None]
) -> None:
    stack = stack_factory(orders=1000, ORDERS_INVALIDATOR_LEASE_TTL="2")
    leader = stack.invalidator
    assert leader is not None
    standby_port = free_port()
    standby = ServiceProcess(
        f"standby-{standby_port}",
        ["invalidate"],
        {**stack.env, "ORDERS_INVALIDATOR_METRICS_PORT": str(standby_port)},
        leader.log_path.parent,
    )
    standby.start()
    try:
        wait_until(
            lambda: sample(scrape(standby_port), "orders_invalidator_leader") == 0,
            60,
            f"the standby to stand by\n{standby.tail()}",
        )
        leader.signal_group(signal.SIGSTOP)
        paused_at = time.monotonic()
        wait_until(
            lambda: sample(scrape(standby_port), "orders_invalidator_leader") == 1,
            30,
            f"the standby to take over\n{standby.tail()}",
        )
        stack.sql("UPDATE orders SET customer_name = 'failover' WHERE id = 505")
        page = stack.page_of(505)
        wait_until(
            lambda: (505, "failover") in [r[:2] for r in stack.page_rows(page)],
            30,
            "the write to show through the new leader",
        )
        failover = time.monotonic() - paused_at
        stack.sql("UPDATE orders SET customer_name = 'while old leader resumes' WHERE id = 606")
        leader.signal_group(signal.SIGCONT)
        with writes_and_reads(stack, range(1, 101)):
            time.sleep(3)
        assert_consistent(stack)
        old = scrape(stack.invalidator_port)
        report("standby_failover", {"failover_s": round(failover, 2), "lease_ttl_s": 2})
        assert sample(old, "orders_invalidator_leader") == 0  # it stands by again
        assert failover < 10
    finally:
        standby.kill()


def test_healthz_turns_red_when_mysql_stalls_and_the_lag_grows_under_a_redis_pause(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory(orders=200, ORDERS_INVALIDATOR_STALL_AFTER="3")
    health = f"http://127.0.0.1:{stack.invalidator_port}/healthz"
    lag = "orders_invalidation_lag_seconds"
    wait_until(lambda: (sample(scrape(stack.invalidator_port), lag) or 99) < 2, 30, "a low lag")

    stack.redis.execute_command("CLIENT", "PAUSE", 8000, "WRITE")
    try:
        stack.sql("UPDATE orders SET customer_name = 'paused redis' WHERE id = 7")
        wait_until(
            lambda: (sample(scrape(stack.invalidator_port), lag) or 0) > 4,
            20,
            "the lag to grow while Redis refuses writes",
        )
    finally:
        stack.redis.execute_command("CLIENT", "UNPAUSE")
    wait_until(lambda: (sample(scrape(stack.invalidator_port), lag) or 99) < 2, 30, "recovery")
    assert requests.get(health, timeout=5).status_code == 200

    stack.mariadb.pause()
    try:
        wait_until(
            lambda: requests.get(health, timeout=5).status_code == 503,
            30,
            "/healthz to fail on a stalled stream",
        )
    finally:
        stack.mariadb.resume()
    wait_until(lambda: requests.get(health, timeout=5).status_code == 200, 60, "/healthz back")
    assert_consistent(stack)
