"""Seeding the bench's large tables fast: the service's own generator, bulk-loaded.

``orders-service seed`` inserts multi-row statements through PyMySQL (~15k orders/s here), so the
10M-order table took most of an hour. The bench instead streams the same generator's rows
(``service.orders.seed.generate``, same seed, same orders) as tab-separated text through a FIFO
into ``LOAD DATA INFILE``, with the counting insert trigger dropped meanwhile; then
``orders-service migrate`` finds the trigger missing and runs its repair path (re-runs the
migrations, rebuilds every block count from the table), so the counts are the service's own.
Generation (this process, one core) and loading (``mariadbd``, the other core) overlap.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from bench.servers import BenchError, MariaDB
from service.orders.seed import generate

COLUMNS = (
    "id",
    "customer_id",
    "customer_name",
    "customer_email",
    "status",
    "amount",
    "currency",
    "item_count",
    "created_at",
    "updated_at",
)
INSERT_TRIGGER = "orders_count_insert"


def tsv_lines(rows: Iterable[tuple[object, ...]]) -> Iterator[str]:
    """One LOAD DATA line per generated row (the generator's values hold no tabs or newlines)."""
    for row in rows:
        yield "\t".join(str(value) for value in row) + "\n"


def _write_fifo(path: Path, lines: Iterator[str], failed: list[BaseException]) -> None:
    try:
        with path.open("w", buffering=1 << 20) as out:
            chunk: list[str] = []
            for line in lines:
                chunk.append(line)
                if len(chunk) >= 5000:
                    out.write("".join(chunk))
                    chunk.clear()
            out.write("".join(chunk))
    except BaseException as exc:  # noqa: BLE001 - reported by the caller
        failed.append(exc)


def load_orders(mysql: MariaDB, database: str, orders: int, seed: int = 42) -> float:
    """Bulk-load ``orders`` generated orders into an empty ``orders`` table; seconds taken.

    The caller runs ``orders-service migrate`` afterwards, which restores the dropped trigger and
    rebuilds the block counts (``repository.recount_buckets``)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="seed-") as scratch:
        fifo = Path(scratch) / "orders.tsv"
        os.mkfifo(fifo)
        failed: list[BaseException] = []
        writer = threading.Thread(
            target=_write_fifo,
            args=(fifo, tsv_lines(generate(orders, seed=seed, first_id=1)), failed),
            daemon=True,
        )
        writer.start()
        try:
            with mysql.connect(database) as conn, conn.cursor() as cur:
                cur.execute(f"DROP TRIGGER IF EXISTS {INSERT_TRIGGER}")
                cur.execute("SET SESSION unique_checks = 0, foreign_key_checks = 0")
                cur.execute(
                    f"LOAD DATA INFILE %s INTO TABLE orders "
                    f"FIELDS TERMINATED BY '\\t' LINES TERMINATED BY '\\n' ({', '.join(COLUMNS)})",
                    (str(fifo),),
                )
        finally:
            if writer.is_alive():
                # the server never opened the FIFO (the statement failed): unblock the writer
                with contextlib.suppress(OSError):
                    os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
            writer.join(timeout=30)
        if failed:
            raise BenchError(f"seeding {database}: generating rows failed: {failed[0]!r}")
    return time.monotonic() - started
