"""The block-count tour's cost and speed (issue 18, case 4): what it asks of MySQL and how long a
drifted count lives.

Runs against a private MariaDB (tests.support.servers, no binlog: the tour reads only tables)
seeded with ``--orders`` orders, with the invalidator's defaults unless told otherwise
(ORDERS_INVALIDATOR_VERIFY_BLOCKS=4 every ORDERS_INVALIDATOR_VERIFY_INTERVAL=1 s, and the
schema check every 2 s). Figures:

- ``block_check_ms``: one block compared (next-block lookup plus a 4096-id range count), median.
- ``statements_per_s``: statements the tour and the schema check send, over ``--seconds``.
- ``drift_to_repair_s``: a block count made wrong (``row_count + 1``) at a random moment in a
  random block; seconds until the tour has repaired it, for ``--drifts`` drifts. The worst case
  is one full tour: blocks / 4 seconds.

``python -m bench.count_verifier [--orders 1000000] [--drifts 5] [--seconds 20]``
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from service.invalidation.repair import SchemaRepair
from service.invalidation.verifier import CountVerifier
from service.orders import repository, schema
from service.orders import seed as generator
from tests.support.servers import MariaDBServer


class CountingCursor:
    """A cursor that counts the statements sent through it."""

    def __init__(self, cursor: Any, counter: list[int]) -> None:
        self._cursor, self._counter = cursor, counter

    def execute(self, query: str, args: Any = None) -> int:
        self._counter[0] += 1
        return int(self._cursor.execute(query, args))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


def runner(connection: Any, counter: list[int], lock: threading.Lock) -> Callable[[Any], Any]:
    def run(work: Callable[[Any], Any]) -> Any:
        with lock, connection.cursor() as cursor:
            return work(CountingCursor(cursor, counter))

    return run


def seed(server: MariaDBServer, orders: int) -> str:
    database = server.create_database()
    with server.connect(database.name, autocommit=False) as connection:
        schema.migrate(connection)
        rows = list(generator.generate(orders, seed=7))
        with connection.cursor() as cursor:
            for start in range(0, len(rows), 5000):
                repository.bulk_insert_orders(cursor, rows[start : start + 5000])
                connection.commit()
    return database.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--drifts", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=20.0)
    options = parser.parse_args()
    with MariaDBServer.create(binlog=False) as server:
        began = time.monotonic()
        name = seed(server, options.orders)
        seeded = time.monotonic() - began
        connection = server.connect(name)
        counter, lock = [0], threading.Lock()
        run = runner(connection, counter, lock)
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM order_buckets")
            blocks = int(cursor.fetchone()[0])

        # one block at a time, timed
        timing = CountVerifier(run, blocks=1, interval=0.0)
        samples = []
        for _ in range(min(blocks, 200)):
            started = time.perf_counter()
            timing.tick()
            samples.append((time.perf_counter() - started) * 1000)

        # the defaults, as the invalidator's loop calls them (every 0.1 s)
        verifier = CountVerifier(run, blocks=4, interval=1.0)
        repair = SchemaRepair(run, settle=1.0)
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(0.1):
                repair.tick()
                verifier.tick()

        thread = threading.Thread(target=loop, daemon=True)
        counter[0] = 0
        thread.start()
        time.sleep(options.seconds)
        statements_per_s = counter[0] / options.seconds

        writer = server.connect(name)
        drift_seconds = []
        for _ in range(options.drifts):
            block = random.randrange(blocks)
            time.sleep(random.uniform(0, 1))
            with writer.cursor() as cursor:
                cursor.execute(
                    "UPDATE order_buckets SET row_count = row_count + 1 WHERE bucket = %s",
                    (block,),
                )
                drifted = time.monotonic()
                while True:
                    cursor.execute(
                        "SELECT row_count FROM order_buckets WHERE bucket = %s", (block,)
                    )
                    kept = int(cursor.fetchone()[0])
                    cursor.execute("SELECT COUNT(*) FROM orders WHERE id DIV 4096 = %s", (block,))
                    if kept == int(cursor.fetchone()[0]):
                        break
                    time.sleep(0.05)
                drift_seconds.append(round(time.monotonic() - drifted, 2))
        stop.set()
        thread.join(5)
        print(
            json.dumps(
                {
                    "orders": options.orders,
                    "blocks": blocks,
                    "seed_s": round(seeded, 1),
                    "block_check_ms": round(statistics.median(samples), 2),
                    "block_check_ms_p90": round(sorted(samples)[int(len(samples) * 0.9)], 2),
                    "statements_per_s": round(statements_per_s, 1),
                    "full_tour_s": blocks / 4,
                    "drift_to_repair_s": drift_seconds,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
