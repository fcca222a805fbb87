"""Invalidation end to end: writes by any client reach the API within a second, the invalidator
misses nothing across a SIGKILL, and rolled-back transactions invalidate nothing.

Real processes only: `orders-service serve` (2 gunicorn workers, near caches) and
`orders-service invalidate` against a throwaway binlog MariaDB and Redis (see conftest.py).
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.faults.conftest import PAGE_SIZE, Stack, percentile
from tests.faults.traffic import INSERT_SQL, warm

pytestmark = [pytest.mark.faults, pytest.mark.slow]

VISIBLE_TIMEOUT = 5.0  # a write not visible by then counts as missed
CONFIRMATIONS = 3  # further fresh-connection reads that must agree, so both workers are checked


def wait_visible(stack: Stack, page: int, shows: Callable[[list[tuple[Any, ...]]], bool]) -> float:
    """Monotonic time at which ``page`` started to show the change in every read (the first of
    1 + CONFIRMATIONS consecutive agreeing reads); fails after VISIBLE_TIMEOUT."""
    deadline = time.monotonic() + VISIBLE_TIMEOUT
    first_seen: float | None = None
    agreeing = 0
    while time.monotonic() < deadline:
        seen_at = time.monotonic()
        response = stack.get(page)
        rows = (
            [(o["id"], o["customer"]["name"]) for o in response.json()["orders"]]
            if response.status_code == 200
            else []
        )
        if shows(rows):
            first_seen = seen_at if first_seen is None else first_seen
            agreeing += 1
            if agreeing > CONFIRMATIONS:
                return first_seen
        else:
            first_seen, agreeing = None, 0
            time.sleep(0.002)
    pytest.fail(f"page {page} did not show the change within {VISIBLE_TIMEOUT} s")


class Writer:
    """Commits one statement with the `mariadb` client or with PyMySQL; returns the monotonic
    time the commit started (the CLI's includes its own start-up, so its latency is an upper
    bound) and, for an INSERT, the new id."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.conn = stack.db.connect(autocommit=False)

    def close(self) -> None:
        self.conn.close()

    def commit(self, client: str, statement: str, *, insert: bool = False) -> tuple[float, int]:
        if client == "cli":
            tail = "; SELECT LAST_INSERT_ID();" if insert else ";"
            began = time.monotonic()
            out = self.stack.db.cli(statement + tail)
            return began, int(out.split()[-1]) if insert else 0
        with self.conn.cursor() as cur:
            cur.execute(statement)
            new_id = int(cur.lastrowid or 0)
        began = time.monotonic()
        self.conn.commit()
        return began, new_id


def test_committed_writes_of_any_client_are_visible_within_a_second(
    stack_factory: Callable[..., Stack], report: Callable[[str, dict[str, Any]], None]
) -> None:
    """200 writes (UPDATE, INSERT at the tail, DELETE; half through the mariadb CLI) on pages
    that are cached beforehand: each shows through the API, on both workers, within 1 s (p99)."""
    stack = stack_factory(orders=3000)
    rng = random.Random(3)
    ids = [row[0] for row in stack.sql("SELECT id FROM orders ORDER BY id")]
    writer = Writer(stack)
    latencies: dict[str, list[float]] = {}
    cached_before = 0
    try:
        for i in range(200):
            kind = ("update", "insert", "delete")[i % 3]
            client = ("cli", "pymysql")[(i // 3) % 2]
            name = f"w{i}"
            if kind == "insert":
                count = stack.sql("SELECT COUNT(*) FROM orders")[0][0]
                page = count // PAGE_SIZE + 1
                if count % PAGE_SIZE:
                    cached_before += warm(stack, page) == "HIT"
                else:  # starts a new page: the cached totals must change for it to exist
                    cached_before += warm(stack, page - 1) == "HIT"
                began, new_id = writer.commit(client, INSERT_SQL.format(name=name), insert=True)
                ids.append(new_id)
                seen = wait_visible(stack, page, lambda rows, want=(new_id, name): want in rows)
            else:
                order_id = rng.choice(ids[:-50])  # not the tail, which inserts keep moving
                page = stack.page_of(order_id)
                cached_before += warm(stack, page) == "HIT"
                if kind == "update":
                    statement = f"UPDATE orders SET customer_name = '{name}' WHERE id = {order_id}"
                    began, _ = writer.commit(client, statement)
                    want = (order_id, name)
                    seen = wait_visible(stack, page, lambda rows, w=want: w in rows)
                else:
                    ids.remove(order_id)
                    began, _ = writer.commit(client, f"DELETE FROM orders WHERE id = {order_id}")
                    seen = wait_visible(
                        stack, page, lambda rows, o=order_id: all(r[0] != o for r in rows)
                    )
            latencies.setdefault(f"{kind}/{client}", []).append(seen - began)
    finally:
        writer.close()

    every = [value for values in latencies.values() for value in values]
    figures: dict[str, Any] = {
        "writes": len(every),
        "p50_ms": round(percentile(every, 0.50) * 1000, 1),
        "p99_ms": round(percentile(every, 0.99) * 1000, 1),
        "max_ms": round(max(every) * 1000, 1),
        "pages_cached_before_write": cached_before,
    }
    for label, values in sorted(latencies.items()):
        figures[f"{label}.p50_ms"] = round(percentile(values, 0.50) * 1000, 1)
        figures[f"{label}.max_ms"] = round(max(values) * 1000, 1)
    report("write_to_visible", figures)

    assert len(every) == 200
    # The pages were cached before the writes (otherwise this would test nothing).
    assert cached_before >= 180, figures
    assert percentile(every, 0.99) < 1.0, figures
    # Every page agrees with MySQL at the end (nothing stale left behind by the stream).
    for page in range(1, stack.total_pages() + 1, 7):
        assert stack.page_rows(page) == stack.sql_page(page), page


def pages_disagreeing(stack: Stack, pages: range) -> list[int]:
    """Pages whose API rows differ from MySQL's (one fresh-connection read each; call it when
    no writes are running, or as an estimate)."""
    expected = stack.sql_pages(pages)
    return [page for page in pages if stack.page_rows(page) != expected[page]]


def test_invalidator_killed_mid_stream_misses_nothing(
    stack_factory: Callable[..., Stack], report: Callable[[str, dict[str, Any]], None]
) -> None:
    """SIGKILL the invalidator while a writer commits updates (and some inserts) and readers
    keep re-caching the pages; restart it: every page ends up equal to MySQL."""
    stack = stack_factory(orders=1000)
    pages = range(1, 101)
    for page in pages:
        warm(stack, page, times=1)
    stop = threading.Event()
    committed = [0]
    errors: list[BaseException] = []

    def write() -> None:
        rng = random.Random(5)
        try:
            with contextlib.closing(stack.db.connect()) as conn, conn.cursor() as cur:
                while not stop.is_set():
                    committed[0] += 1
                    if committed[0] % 10 == 0:
                        cur.execute(INSERT_SQL.format(name=f"k{committed[0]}"))
                    else:
                        cur.execute(
                            "UPDATE orders SET customer_name = %s, amount = amount + 1 "
                            "WHERE id = %s",
                            (f"k{committed[0]}", rng.randint(1, 1000)),
                        )
                    time.sleep(0.02)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    def read() -> None:
        rng = random.Random(6)
        try:
            while not stop.is_set():
                stack.get(rng.choice(pages))
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=write), *(threading.Thread(target=read) for _ in range(2))]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        assert stack.invalidator is not None
        stack.invalidator.kill()  # SIGKILL: no chance to save anything
        at_kill = committed[0]
        time.sleep(3)  # writes keep coming; readers re-cache pages the dead invalidator misses
        during_outage = committed[0] - at_kill
        stale_while_dead = len(pages_disagreeing(stack, pages))  # an estimate: writes go on
        stack.start_invalidator()
        time.sleep(1.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not errors, errors
    final_writes = committed[0]

    began = time.monotonic()
    deadline = began + 30  # the restarted invalidator replays everything since its last position
    while (wrong := pages_disagreeing(stack, pages)) and time.monotonic() < deadline:
        time.sleep(0.2)
    caught_up = time.monotonic() - began
    report(
        "invalidator_sigkill",
        {
            "writes": final_writes,
            "writes_while_dead": during_outage,
            "pages_stale_while_dead": stale_while_dead,
            "catch_up_s": round(caught_up, 2),
            "pages_wrong_at_end": len(wrong),
        },
    )
    assert during_outage > 20, "the writer must keep committing while the invalidator is dead"
    assert not wrong, f"pages still differing from MySQL after the restart: {wrong}"
    # Both workers agree too: three more full passes, each read on a fresh connection.
    for _ in range(3):
        assert not pages_disagreeing(stack, range(1, stack.total_pages() + 1))


def test_rolled_back_transactions_invalidate_nothing(stack_factory: Callable[..., Stack]) -> None:
    """UPDATE, DELETE and INSERT rolled back (PyMySQL and the mariadb CLI) leave the cached pages
    HIT; a committed write made after them is seen, so the invalidator did read past them."""
    stack = stack_factory(orders=1000)
    last = stack.total_pages()
    for page in (5, 9, last):
        warm(stack, page)
        assert warm(stack, page, times=4) == "HIT"
    before = {page: stack.get(page).text for page in (5, 9, last)}

    with contextlib.closing(stack.db.connect(autocommit=False)) as conn, conn.cursor() as cur:
        cur.execute("UPDATE orders SET customer_name = 'rolled back' WHERE id = 45")
        cur.execute("DELETE FROM orders WHERE id = 85")
        cur.execute(INSERT_SQL.format(name="rolled back"))
        conn.rollback()
    stack.db.cli(
        "BEGIN; UPDATE orders SET customer_name = 'rolled back' WHERE id = 46; "
        f"{INSERT_SQL.format(name='rolled back')}; ROLLBACK;"
    )
    # A committed write after the rollbacks, on another page: once it shows, the invalidator
    # has processed everything before it.
    stack.sql("UPDATE orders SET customer_name = 'sentinel' WHERE id = 501")
    wait_visible(stack, 51, lambda rows: (501, "sentinel") in rows)

    for page, body in before.items():
        for _ in range(6):  # fresh connections: both workers
            response = stack.get(page)
            assert response.headers["X-Cache"] == "HIT", (page, response.headers)
            assert response.text == body
        assert stack.redis.exists(stack.key(f"page:{page}")), page
