"""The consistency checker: every page and the totals the API serves, against one MySQL snapshot.

Used after each failure scenario (tests/faults): once the scenario is over and no write is in
flight, whatever the API answers must be what MySQL holds, within the staleness bound. The
snapshot is one ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` read of every order, so the pages
and the count it gives can never mix two moments. Every page is requested ``repeats`` times on
fresh connections: with gunicorn the kernel spreads them over the workers, so each worker's near
cache is looked at (with the Flask test client there is one process and ``repeats=1`` suffices).

``settle`` is how long the served copy may take to converge (the bound: ``ORDERS_CACHE_MAX_LAG``
plus one refill); the check is repeated until it passes or that time is up, and the mismatches of
the last round are reported.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

OrderKey = tuple[int, str, str, str]
# (status, parsed JSON body or None) for one GET /orders/<page>
Fetch = Callable[[int], tuple[int, dict[str, Any] | None]]


@dataclass(frozen=True)
class Snapshot:
    orders: list[OrderKey]
    page_size: int

    @property
    def total(self) -> int:
        return len(self.orders)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))

    def page(self, number: int) -> list[OrderKey]:
        start = (number - 1) * self.page_size
        return self.orders[start : start + self.page_size]


@dataclass(frozen=True)
class Mismatch:
    page: int
    attempt: int
    why: str


def snapshot(connect: Callable[[], Any], page_size: int) -> Snapshot:
    """Every order as one consistent MySQL snapshot (``connect()``: a PyMySQL connection)."""
    with contextlib.closing(connect()) as conn, conn.cursor() as cur:
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        cur.execute("SELECT id, customer_name, status, amount FROM orders ORDER BY id")
        rows = cur.fetchall()
        cur.execute("COMMIT")
    return Snapshot([(int(i), str(n), str(s), str(a)) for i, n, s, a in rows], page_size)


def order_key(order: dict[str, Any]) -> OrderKey:
    return (
        int(order["id"]),
        str(order["customer"]["name"]),
        str(order["status"]),
        str(order["total"]["amount"]),
    )


def mismatches(fetch: Fetch, truth: Snapshot, *, repeats: int = 1) -> list[Mismatch]:
    """Every page (and one past the last) compared with ``truth``, ``repeats`` times each."""
    found: list[Mismatch] = []
    for number in range(1, truth.pages + 2):
        for attempt in range(repeats):
            status, body = fetch(number)
            if number > truth.pages:
                if status != 404:
                    found.append(Mismatch(number, attempt, f"past the last page: {status}"))
                continue
            if status != 200 or body is None:
                found.append(Mismatch(number, attempt, f"status {status}"))
                continue
            if body["total_orders"] != truth.total:
                found.append(
                    Mismatch(number, attempt, f"totals {body['total_orders']} != {truth.total}")
                )
            served = [order_key(order) for order in body["orders"]]
            if served != truth.page(number):
                found.append(Mismatch(number, attempt, f"orders differ: {served[:2]}..."))
    return found


def assert_consistent(
    fetch: Fetch,
    connect: Callable[[], Any],
    page_size: int,
    *,
    repeats: int = 1,
    settle: float = 0.0,
) -> float:
    """Fail unless the API agrees with MySQL within ``settle`` seconds; returns the time it took.

    MySQL must not be written meanwhile (the snapshot is retaken each round all the same)."""
    began = time.monotonic()
    while True:
        truth = snapshot(connect, page_size)
        found = mismatches(fetch, truth, repeats=repeats)
        if not found:
            return time.monotonic() - began
        if time.monotonic() - began > settle:
            shown = "\n".join(f"  page {m.page} (read {m.attempt}): {m.why}" for m in found[:10])
            raise AssertionError(
                f"{len(found)} answers disagree with MySQL after {settle} s:\n{shown}"
            )
        time.sleep(0.1)


def http_fetch(base_url: str, timeout: float = 10.0) -> Fetch:
    """A ``Fetch`` over HTTP, one fresh connection per request (spreads over workers)."""
    import requests

    def fetch(number: int) -> tuple[int, dict[str, Any] | None]:
        response = requests.get(f"{base_url}/orders/{number}", timeout=timeout)
        return response.status_code, response.json() if response.status_code == 200 else None

    return fetch
