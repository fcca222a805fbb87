"""Invalidation throughput (issue 13): rows/s the follower reads and how soon a big transaction
reaches the cache, side by side with the library's own row decoding.

Runs against a private MariaDB with the binlog on (tests.support.servers) and the shared Redis
under a private prefix (deleted afterwards). Three figures, one run:

- ``follower_rows_per_s``: a 60k-row transaction followed from its start to its commit by the
  follower, which reads only the id column; ``library_rows_per_s``: the same events with the
  library decoding every column (``event.rows``, what the follower did before); their ratio.
- ``txn_visible_s``: the invalidator running, one 60k-row INSERT committed: seconds from the
  COMMIT returning to the totals in Redis showing the new count (the first chunk's step: it
  shifts every page from the lowest new id, so every page the transaction moved is invalidated
  by then); ``txn_position_saved_s``: until the whole transaction is read and its recheck step
  stored the position past it.
- ``sustained_rows_per_s``: 10 transactions of 10k rows committed back to back; rows per second
  from the first COMMIT to the last one's invalidation, and the lag left at the end.

``python -m bench.follower_throughput [--rows 60000] [--out bench/results]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import XidEvent
from pymysqlreplication.row_event import WriteRowsEvent

from service.cache.entries import TotalsEntry
from service.config import Settings
from service.invalidation.changes import BinlogPosition
from service.invalidation.follower import BinlogFollower
from service.invalidation.mysql_source import current_position
from service.orders import schema
from service.wiring import build_invalidator
from tests.support.servers import MariaDBServer

SHARED_REDIS = os.environ.get("ORDERS_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _insert(rows: int, first: int = 1) -> str:
    return (
        "INSERT INTO orders (customer_id, customer_name, customer_email, status, amount, "
        "currency, item_count) SELECT seq, CONCAT('bulk ', seq), 'bulk@example.com', 'paid', "
        f"1.00, 'EUR', 1 FROM seq_{first}_to_{first + rows - 1}"
    )


def follower_rate(server: MariaDBServer, database: str, rows: int) -> dict[str, float]:
    settings = Settings.from_env({"ORDERS_DATABASE_URL": server.database_url(database)})
    start = current_position(settings.database_url)
    with contextlib.closing(server.connect(database)) as conn, conn.cursor() as cur:
        cur.execute(_insert(rows))
    end = current_position(settings.database_url)

    follower = BinlogFollower(
        settings.database_url,
        server_id=9101,
        start=start,
        schemas=[database],
        tables={"orders": None},
        heartbeat_seconds=0.5,
    )
    # Timed from the first rows handed out to the commit, so connecting is not counted.
    first: tuple[float, int] | None = None
    seen = 0
    with contextlib.closing(follower.batches()) as stream:
        for batch in stream:
            inserted = sum(1 for change in batch.changes if change.kind == "insert")
            seen += inserted
            if first is None and inserted:
                first = (time.perf_counter(), inserted)
            if not batch.partial and batch.position >= end:
                break
    assert first is not None
    ours_rows, ours = rows - first[1], time.perf_counter() - first[0]

    reader = BinLogStreamReader(
        connection_settings=server.connection_settings(),
        server_id=9102,
        log_file=start.log_file,
        log_pos=start.log_pos,
        resume_stream=True,
        blocking=True,
        only_events=[WriteRowsEvent, XidEvent],
        only_schemas=[database],
        only_tables=["orders"],
        enable_logging=False,
    )
    began: tuple[float, int] | None = None
    decoded = 0
    try:
        for event in reader:
            if isinstance(event, WriteRowsEvent):
                decoded += len(event.rows)
                if began is None:
                    began = (time.perf_counter(), decoded)
            elif decoded >= rows:
                break
    finally:
        reader.close()
    assert began is not None
    library_rows, library = rows - began[1], time.perf_counter() - began[0]
    assert seen == rows == decoded, (seen, decoded)
    ours_rate, library_rate = ours_rows / ours, library_rows / library
    return {
        "follower_rows_per_s": round(ours_rate),
        "library_rows_per_s": round(library_rate),
        "follower_vs_library": round(ours_rate / library_rate, 2),
    }


def invalidator_timings(server: MariaDBServer, database: str, rows: int) -> dict[str, float]:
    prefix = f"bench_inval_{uuid.uuid4().hex[:8]}"
    settings = Settings.from_env(
        {
            "ORDERS_DATABASE_URL": server.database_url(database),
            "ORDERS_REDIS_URL": SHARED_REDIS,
            "ORDERS_CACHE_PREFIX": prefix,
            "ORDERS_LOG_LEVEL": "warning",
            "ORDERS_INVALIDATOR_LEASE_TTL": "1",
        }
    )
    client = redis.Redis.from_url(SHARED_REDIS)
    invalidator = build_invalidator(settings)
    keys = invalidator.cache.keys
    thread = threading.Thread(target=invalidator.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not client.get(keys.binlog_position) or not invalidator.active.is_set():
            assert time.monotonic() < deadline, "the invalidator did not start"
            time.sleep(0.02)

        def count() -> int:
            with contextlib.closing(server.connect(database)) as conn, conn.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM orders")
                return int(cur.fetchone()[0])

        def totals_reach(target: int, timeout: float = 120) -> float:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                raw = client.get(keys.totals)
                if raw and TotalsEntry.decode(raw).total_orders == target:
                    return time.monotonic()
                time.sleep(0.002)
            raise AssertionError(f"totals never reached {target}")

        pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        pubsub.subscribe(keys.channel)
        pubsub.get_message(timeout=1)
        before = count()
        with contextlib.closing(server.connect(database, autocommit=False)) as conn:
            with conn.cursor() as cur:
                cur.execute(_insert(rows, first=1_000_000))
            conn.commit()
            committed = time.monotonic()
        end = current_position(settings.database_url)
        first_step = None
        while first_step is None and time.monotonic() - committed < 60:
            message = pubsub.get_message(timeout=0.5)
            if message and message["type"] == "message" and b"f" in message["data"]:
                first_step = time.monotonic()
        visible = totals_reach(before + rows)
        pubsub.close()
        while True:  # the position passes the commit only with the recheck step
            stored = client.get(keys.binlog_position)
            if stored and BinlogPosition.parse(stored.decode()) >= end:
                applied_all = time.monotonic()
                break
            assert time.monotonic() - committed < 120, "the position never passed the commit"
            time.sleep(0.002)

        batches, per = 10, 10_000
        before = count()
        began = time.monotonic()
        for i in range(batches):
            with contextlib.closing(server.connect(database)) as conn, conn.cursor() as cur:
                cur.execute(_insert(per, first=2_000_000 + i * per))
        last_commit = time.monotonic()
        applied = totals_reach(before + batches * per)
        return {
            "txn_rows": rows,
            "txn_first_step_s": round((first_step or visible) - committed, 3),
            "txn_visible_s": round(visible - committed, 3),
            "txn_position_saved_s": round(applied_all - committed, 3),
            "sustained_rows": batches * per,
            "sustained_rows_per_s": round(batches * per / (applied - began)),
            "sustained_lag_after_last_commit_s": round(applied - last_commit, 3),
        }
    finally:
        invalidator.stop()
        thread.join(15)
        for batch in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.unlink(batch)
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.follower_throughput", description=__doc__
    )
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    with MariaDBServer.create(binlog=True) as server:
        database = server.create_database("bench_invalidation").name
        with contextlib.closing(server.connect(database)) as conn:
            schema.migrate(conn)
        load_before = os.getloadavg()[0]
        results: dict[str, Any] = {
            **follower_rate(server, database, args.rows),
            **invalidator_timings(server, database, args.rows),
        }
        results["load_average"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
        results["cpus"] = os.cpu_count()
    targets = {
        "follower_rows_per_s >= 50000": results["follower_rows_per_s"] >= 50_000,
        "txn_visible_s <= 1.0": results["txn_visible_s"] <= 1.0,
    }
    results["targets"] = {name: "met" if ok else "not met" for name, ok in targets.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "follower-throughput.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
