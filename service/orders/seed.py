"""Deterministic, realistic orders for development and benchmarks.

The same ``seed`` always gives the same orders. Rows are generated in batches and inserted with
multi-row statements; 1,000,000 orders take well under a minute on two cores (docs/operations.md,
Data).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import islice
from typing import Any

FIRST_NAMES = (
    "Ada",
    "Alan",
    "Barbara",
    "Claude",
    "Dennis",
    "Edsger",
    "Frances",
    "Grace",
    "Hedy",
    "Ivan",
    "Joan",
    "Ken",
    "Leslie",
    "Margaret",
    "Niklaus",
    "Ole",
    "Radia",
    "Sophie",
    "Tim",
    "Whitfield",
    "Yukihiro",
    "Zhang",
    "Amara",
    "Bjarne",
    "Chidi",
    "Dagny",
    "Emeka",
    "Fatima",
    "Guido",
    "Hana",
)
LAST_NAMES = (
    "Lovelace",
    "Turing",
    "Liskov",
    "Shannon",
    "Ritchie",
    "Dijkstra",
    "Allen",
    "Hopper",
    "Lamarr",
    "Sutherland",
    "Clarke",
    "Thompson",
    "Lamport",
    "Hamilton",
    "Wirth",
    "Dahl",
    "Perlman",
    "Wilson",
    "Berners-Lee",
    "Diffie",
    "Matsumoto",
    "Wei",
    "Okafor",
    "Stroustrup",
    "Eze",
    "Nygaard",
    "Bello",
    "van Rossum",
    "Sato",
    "Kowalski",
)
STATUSES = ("pending", "paid", "shipped", "delivered", "cancelled", "refunded")
STATUS_WEIGHTS = (5, 10, 15, 60, 7, 3)
CURRENCIES = ("EUR", "USD", "GBP")
CURRENCY_WEIGHTS = (50, 35, 15)
CUSTOMERS = 50_000
BATCH = 5000
WRITERS = 1  # one thread inserts while this one generates; two measured no faster (MySQL-bound)
EPOCH = datetime(2023, 1, 1, tzinfo=UTC).replace(tzinfo=None)


def generate(count: int, seed: int = 42, first_id: int = 1) -> Iterator[tuple[object, ...]]:
    """Rows for ``repository.insert_orders``: ids ``first_id..``, times increasing with the id."""
    rng = random.Random(seed)  # noqa: S311 - sample data, not secrets
    created = EPOCH
    for order_id in range(first_id, first_id + count):
        customer = rng.randrange(1, CUSTOMERS + 1)
        first = FIRST_NAMES[customer % len(FIRST_NAMES)]
        last = LAST_NAMES[(customer // len(FIRST_NAMES)) % len(LAST_NAMES)]
        created += timedelta(seconds=rng.randrange(1, 90))
        status = rng.choices(STATUSES, STATUS_WEIGHTS)[0]
        updated = (
            created if status == "pending" else created + timedelta(hours=rng.randrange(1, 96))
        )
        yield (
            order_id,
            customer,
            f"{first} {last}",
            f"{first}.{last}.{customer}@example.com".lower().replace(" ", ""),
            status,
            Decimal(rng.randrange(199, 250_000)) / 100,
            rng.choices(CURRENCIES, CURRENCY_WEIGHTS)[0],
            rng.randrange(1, 12),
            created,
            updated,
        )


def load(
    connect: Callable[[], Any],
    rows: Iterator[tuple[object, ...]],
    on_batch: Callable[[int], None],
) -> None:
    """Insert ``rows`` in batches from ``WRITERS`` connections while this thread generates the
    next batches; at most a few batches wait in memory."""
    from service.orders import repository

    local = threading.local()
    opened: list[Any] = []

    def insert(batch: list[tuple[object, ...]]) -> int:
        if not hasattr(local, "connection"):
            local.connection = connect()
            opened.append(local.connection)
        with local.connection.cursor() as cursor:
            repository.bulk_insert_orders(cursor, batch)
        local.connection.commit()
        return len(batch)

    pending: list[Future[int]] = []
    try:
        with ThreadPoolExecutor(WRITERS, thread_name_prefix="seed") as pool:
            while batch := list(islice(rows, BATCH)):
                pending.append(pool.submit(insert, batch))
                while len(pending) > WRITERS * 2 or (pending and pending[0].done()):
                    on_batch(pending.pop(0).result())
            for future in pending:
                on_batch(future.result())
    finally:
        for connection in opened:
            connection.close()
