"""Every SQL statement on the service's tables: orders, block counts, heartbeats, migrations.

The other SQL lives beside what it serves: the schema's shape from information_schema in
``catalog``, the binlog server's settings and position in ``invalidation.mysql_source``, grants in
``roles`` and the migrations' DDL in ``migrations/`` (the binlog library runs its own).

Pages are found without OFFSET scans or COUNT(*): ``order_buckets`` holds an exact row count per
block of ``BUCKET_WIDTH`` ids (kept by triggers, see migrations/0002). The page starting at rank r
is in the first block whose running total passes r; inside that block at most ``BUCKET_WIDTH`` ids
are skipped. A miss therefore costs the same on page 1 and on the last page of 10M orders.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from service.orders.pagination import first_rank

BUCKET_WIDTH = 4096  # ids per order_buckets row; must match the triggers in migrations/0002

ORDER_COLUMNS = (
    "id, customer_id, customer_name, customer_email, status, amount, currency, item_count, "
    "created_at, updated_at"
)

# The block holding 0-based rank %(rank)s and how many rows come before that block.
_BUCKET_OF_RANK = """
SELECT bucket, rows_before FROM (
  SELECT bucket, row_count,
         CAST(SUM(row_count) OVER (ORDER BY bucket) AS SIGNED) - row_count AS rows_before
  FROM order_buckets
) AS running
WHERE rows_before + row_count > %(rank)s
ORDER BY bucket
LIMIT 1
"""

_PAGE_FROM_BUCKET = f"""
SELECT {ORDER_COLUMNS} FROM orders
WHERE id >= %(first_id)s
ORDER BY id
LIMIT %(limit)s OFFSET %(skip)s
"""

_TOTAL_ORDERS = "SELECT CAST(COALESCE(SUM(row_count), 0) AS SIGNED) FROM order_buckets"

_ROWS_BEFORE_ID = """
SELECT
  (SELECT CAST(COALESCE(SUM(row_count), 0) AS SIGNED) FROM order_buckets
   WHERE bucket < %(bucket)s)
  + (SELECT COUNT(*) FROM orders WHERE id >= %(bucket_start)s AND id < %(id)s)
"""

_ANY_ORDER = "SELECT 1 FROM orders LIMIT 1"

_INSERT_ORDERS = (
    "INSERT INTO orders (id, customer_id, customer_name, customer_email, status, amount, "
    "currency, item_count, created_at, updated_at) VALUES "
)


class Cursor(Protocol):
    """The part of a DB-API cursor the repository uses (PyMySQL's, in practice)."""

    def execute(self, query: str, args: Any = None) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> Any: ...

    @property
    def connection(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class Order:
    """One row of the orders table, as the API shows it."""

    id: int
    customer_id: int
    customer_name: str
    customer_email: str
    status: str
    amount: Decimal
    currency: str
    item_count: int
    created_at: datetime
    updated_at: datetime


def fetch_page(cursor: Cursor, page: int, page_size: int) -> list[Order]:
    """The orders of 1-based ``page``, ordered by id; empty when the page is past the end."""
    return fetch_pages(cursor, page, 1, page_size)[0]


def fetch_pages(cursor: Cursor, first_page: int, pages: int, page_size: int) -> list[list[Order]]:
    """``pages`` consecutive pages from ``first_page`` in one read (the same statements as one
    page: the consistency inspector's tour compares a block of pages per query)."""
    rank = first_rank(first_page, page_size)
    cursor.execute(_BUCKET_OF_RANK, {"rank": rank})
    located = cursor.fetchone()
    if located is None:
        return [[] for _ in range(pages)]
    bucket, rows_before = located
    cursor.execute(
        _PAGE_FROM_BUCKET,
        {
            "first_id": int(bucket) * BUCKET_WIDTH,
            "limit": page_size * pages,
            "skip": rank - rows_before,
        },
    )
    rows = [Order(*row) for row in cursor.fetchall()]
    return [rows[n * page_size : (n + 1) * page_size] for n in range(pages)]


def count_orders(cursor: Cursor) -> int:
    """Total orders, from the block counts (a few thousand rows, not the whole table)."""
    cursor.execute(_TOTAL_ORDERS)
    return int(cursor.fetchone()[0])


def rows_before_id(cursor: Cursor, order_id: int) -> int:
    """How many orders have a smaller id: the 0-based rank ``order_id`` has, or would have."""
    bucket = order_id // BUCKET_WIDTH
    cursor.execute(
        _ROWS_BEFORE_ID,
        {"bucket": bucket, "bucket_start": bucket * BUCKET_WIDTH, "id": order_id},
    )
    return int(cursor.fetchone()[0])


def recount_buckets(cursor: Cursor) -> None:
    """Rebuild every block count from the table, with writers held off meanwhile (after a
    TRUNCATE, or loading rows with triggers missing). One transaction, not LOCK TABLES (a right
    no running role needs): under REPEATABLE READ the INSERT ... SELECT share-locks every row
    and gap of orders it reads until COMMIT, so no write lands between the count and its use;
    the scan ends before the first count is written, so a writer's trigger never waits on us
    while we wait on its row."""
    cursor.execute("START TRANSACTION")
    try:
        cursor.execute(
            "INSERT INTO order_buckets (bucket, row_count) "
            "SELECT id DIV %s, COUNT(*) FROM orders GROUP BY id DIV %s "
            "ON DUPLICATE KEY UPDATE row_count = VALUES(row_count)",
            (BUCKET_WIDTH, BUCKET_WIDTH),
        )
        cursor.execute(
            "DELETE FROM order_buckets WHERE bucket NOT IN (SELECT DISTINCT id DIV %s FROM orders)",
            (BUCKET_WIDTH,),
        )
        cursor.execute("COMMIT")
    except BaseException:
        cursor.execute("ROLLBACK")
        raise


def write_heartbeat(cursor: Cursor, invalidator: int, seq: int) -> None:
    """The invalidator's heartbeat: a row change that travels through the binlog like any write,
    so seeing it come back proves every commit before it was read (pt-heartbeat's idea)."""
    cursor.execute(
        "INSERT INTO heartbeat (invalidator, seq) VALUES (%s, %s) "
        "ON DUPLICATE KEY UPDATE seq = VALUES(seq)",
        (invalidator, seq),
    )


# ---- block counts, verified ---------------------------------------------------------------------
_NO_BLOCK = 2**63  # past any block (ids are below 2**64, blocks below 2**52)
# The next block after %(after)s that has a count or rows: two index lookups, never a scan.
_NEXT_BLOCK = f"""
SELECT LEAST(
  COALESCE((SELECT MIN(bucket) FROM order_buckets WHERE bucket > %(after)s), {_NO_BLOCK}),
  COALESCE((SELECT MIN(id) FROM orders WHERE id >= %(from_id)s) DIV {BUCKET_WIDTH}, {_NO_BLOCK}))
"""
# A block's kept count and its rows, read in one statement: one read view, so a commit between
# the two reads cannot show as a drift (the triggers change both in the writer's transaction).
_BLOCK_COUNTS = """
SELECT
  (SELECT COALESCE(SUM(row_count), 0) FROM order_buckets WHERE bucket = %(bucket)s),
  (SELECT COUNT(*) FROM orders WHERE id >= %(first)s AND id < %(end)s)
"""


def next_block(cursor: Cursor, after: int) -> int | None:
    """The first block past ``after`` (-1: from the start) with a count or with rows."""
    cursor.execute(_NEXT_BLOCK, {"after": after, "from_id": (after + 1) * BUCKET_WIDTH})
    found = int(cursor.fetchone()[0])
    return None if found >= _NO_BLOCK else found


def block_counts(cursor: Cursor, bucket: int) -> tuple[int, int]:
    """(count kept in order_buckets, rows in the block) for one block, from one read view."""
    first = bucket * BUCKET_WIDTH
    cursor.execute(_BLOCK_COUNTS, {"bucket": bucket, "first": first, "end": first + BUCKET_WIDTH})
    kept, real = cursor.fetchone()
    return int(kept), int(real)


def repair_block(cursor: Cursor, bucket: int) -> tuple[int, int] | None:
    """Set one block's count to its rows in a transaction of its own that holds writers to the
    block off (its ids share-locked, gaps included, then its count row): (was, now) when it was
    wrong. Lock waits give up after 1 s (error 1205; InnoDB's least), so the invalidation steps
    it runs between wait no longer; the next round tries again."""
    first = bucket * BUCKET_WIDTH
    cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")
    cursor.execute("START TRANSACTION")
    try:
        cursor.execute(
            "SELECT COUNT(*) FROM orders WHERE id >= %s AND id < %s LOCK IN SHARE MODE",
            (first, first + BUCKET_WIDTH),
        )
        real = int(cursor.fetchone()[0])
        cursor.execute(
            "SELECT COALESCE(SUM(row_count), 0) FROM order_buckets WHERE bucket = %s FOR UPDATE",
            (bucket,),
        )
        kept = int(cursor.fetchone()[0])
        if kept != real:
            cursor.execute(
                "INSERT INTO order_buckets (bucket, row_count) VALUES (%s, %s) "
                "ON DUPLICATE KEY UPDATE row_count = VALUES(row_count)",
                (bucket, real),
            )
        cursor.execute("COMMIT")
    except BaseException:
        cursor.execute("ROLLBACK")
        raise
    return None if kept == real else (kept, real)


def ping(cursor: Cursor) -> None:
    """Readiness: the server answers a query on this connection."""
    cursor.execute("SELECT 1")
    cursor.fetchone()


PAGE_TABLES = ("orders", "order_buckets")  # what a page is read from (heartbeat is not needed)


def missing_tables(cursor: Cursor) -> list[str]:
    """Readiness: which of the tables the pages are read from the current database lacks (a
    server that answers but was never migrated). information_schema, so no error path."""
    cursor.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = DATABASE() AND table_name IN (%s, %s)",
        PAGE_TABLES,
    )
    present = {str(row[0]) for row in cursor.fetchall()}
    return [name for name in PAGE_TABLES if name not in present]


def create_database(cursor: Cursor, name: str) -> None:
    """Create the service's database if missing (a fresh server, a new chart install)."""
    quoted = name.replace("`", "``")
    cursor.execute(
        f"CREATE DATABASE IF NOT EXISTS `{quoted}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    )


def has_orders(cursor: Cursor) -> bool:
    cursor.execute(_ANY_ORDER)
    return cursor.fetchone() is not None


def insert_orders(cursor: Cursor, rows: Sequence[Sequence[Any]]) -> None:
    """Insert many orders in one statement (values are bound, not pasted); the insert trigger
    counts them, one row at a time."""
    placeholders = ",".join(["(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"] * len(rows))
    cursor.execute(_INSERT_ORDERS + placeholders, [v for row in rows for v in row])


def bulk_insert_orders(cursor: Cursor, rows: Sequence[Sequence[Any]]) -> None:
    """Insert many orders and add their block counts with one statement instead of one trigger
    run per row (twice as fast). Run it inside the transaction that commits the rows."""
    cursor.execute("SET @orders_rows_counted_by_writer = 1")
    try:
        insert_orders(cursor, rows)
    finally:
        cursor.execute("SET @orders_rows_counted_by_writer = NULL")
    per_bucket = Counter(int(row[0]) // BUCKET_WIDTH for row in rows)
    counted = " UNION ALL ".join(["SELECT %s AS bucket, %s AS n"] * len(per_bucket))
    cursor.execute(
        "INSERT INTO order_buckets (bucket, row_count) "
        f"SELECT counted.bucket, counted.n FROM ({counted}) AS counted "
        "ON DUPLICATE KEY UPDATE row_count = row_count + counted.n",
        [v for item in sorted(per_bucket.items()) for v in item],
    )


def max_order_id(cursor: Cursor) -> int:
    cursor.execute("SELECT COALESCE(MAX(id), 0) FROM orders")
    return int(cursor.fetchone()[0])


# --- migrations -----------------------------------------------------------------------------

MIGRATION_LOCK = "orders_service_migrate"  # the name's start; see migration_lock_name

_CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
  version    VARCHAR(64) NOT NULL PRIMARY KEY,
  applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB
"""


def migration_lock_name(cursor: Cursor) -> str:
    """The named lock's name: GET_LOCK needs no privilege, so a fixed name could be held by any
    account (an API pod stalling every migration). The name is a keyed hash of the migrate
    role's password and database: every migrate replica computes it, no other role can."""
    connection = cursor.connection
    password = connection.password or b""
    secret = password if isinstance(password, bytes) else str(password).encode()
    database = connection.db or b""
    database = database if isinstance(database, bytes) else str(database).encode()
    digest = hmac.new(secret, b"orders-service migration lock:" + database, hashlib.sha256)
    return f"{MIGRATION_LOCK}_{digest.hexdigest()[:32]}"


def acquire_migration_lock(cursor: Cursor, timeout_seconds: int) -> bool:
    """A server-wide named lock, so two replicas starting together migrate one after the other."""
    cursor.execute("SELECT GET_LOCK(%s, %s)", (migration_lock_name(cursor), timeout_seconds))
    return bool(cursor.fetchone()[0])


def release_migration_lock(cursor: Cursor) -> None:
    cursor.execute("SELECT RELEASE_LOCK(%s)", (migration_lock_name(cursor),))
    cursor.fetchone()


def applied_migrations(cursor: Cursor) -> set[str]:
    cursor.execute(_CREATE_MIGRATIONS_TABLE)
    cursor.execute("SELECT version FROM schema_migrations")
    return {str(row[0]) for row in cursor.fetchall()}


def apply_migration(cursor: Cursor, version: str, statements: Iterable[str]) -> None:
    """Run one migration's statements and record it. DDL commits implicitly in MySQL, so each
    statement is written to be re-runnable (IF NOT EXISTS / DROP IF EXISTS)."""
    for statement in statements:
        cursor.execute(statement)
    cursor.execute("INSERT IGNORE INTO schema_migrations (version) VALUES (%s)", (version,))
