"""The only module that speaks SQL. Every query the service and the invalidator run is here.

Pages are found without OFFSET scans or COUNT(*): ``order_buckets`` holds an exact row count per
block of ``BUCKET_WIDTH`` ids (kept by triggers, see migrations/0002). The page starting at rank r
is in the first block whose running total passes r; inside that block at most ``BUCKET_WIDTH`` ids
are skipped. A miss therefore costs the same on page 1 and on the last page of 10M orders.
"""

from __future__ import annotations

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


def forget_counts_if_empty(cursor: Cursor) -> None:
    """TRUNCATE fires no DELETE triggers: after one, the block counts must be cleared too."""
    cursor.execute("DELETE FROM order_buckets WHERE NOT EXISTS (SELECT 1 FROM orders)")


def recount_buckets(cursor: Cursor) -> None:
    """Rebuild every block count from the table, with writers held off meanwhile (an admin's
    repair after loading rows with triggers missing)."""
    cursor.execute("LOCK TABLES orders READ, order_buckets WRITE")
    try:
        cursor.execute("DELETE FROM order_buckets")
        cursor.execute(
            "INSERT INTO order_buckets (bucket, row_count) "
            "SELECT id DIV %s, COUNT(*) FROM orders GROUP BY id DIV %s",
            (BUCKET_WIDTH, BUCKET_WIDTH),
        )
    finally:
        cursor.execute("UNLOCK TABLES")


def write_heartbeat(cursor: Cursor, invalidator: int, seq: int) -> None:
    """The invalidator's heartbeat: a row change that travels through the binlog like any write,
    so seeing it come back proves every commit before it was read (pt-heartbeat's idea)."""
    cursor.execute(
        "INSERT INTO heartbeat (invalidator, seq) VALUES (%s, %s) "
        "ON DUPLICATE KEY UPDATE seq = VALUES(seq)",
        (invalidator, seq),
    )


# Foreign keys on ``orders`` whose action changes orders rows when the parent changes: InnoDB
# applies them inside the storage engine, so they reach neither the row binlog nor the triggers.
_CASCADING_FOREIGN_KEYS = """
SELECT CONSTRAINT_NAME, REFERENCED_TABLE_NAME, DELETE_RULE, UPDATE_RULE
FROM information_schema.REFERENTIAL_CONSTRAINTS
WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = 'orders'
  AND (DELETE_RULE IN ('CASCADE', 'SET NULL', 'SET DEFAULT')
       OR UPDATE_RULE IN ('CASCADE', 'SET NULL', 'SET DEFAULT'))
ORDER BY CONSTRAINT_NAME
"""


def cascading_foreign_keys(cursor: Cursor) -> list[str]:
    """Foreign keys that let another table's writes change orders rows unseen, described."""
    cursor.execute(_CASCADING_FOREIGN_KEYS)
    return [
        f"{name} (references {parent}, ON DELETE {on_delete}, ON UPDATE {on_update})"
        for name, parent, on_delete, on_update in cursor.fetchall()
    ]


SCHEMA_TABLES = ("orders", "order_buckets", "heartbeat")
COUNTING_TRIGGERS = ("orders_count_insert", "orders_count_delete", "orders_count_move")


def missing_schema_objects(cursor: Cursor) -> list[str]:
    """The service's tables and counting triggers (on ``orders`` itself) that do not exist now:
    a table swap (RENAME) or DROP + CREATE leaves the triggers behind on the old table."""
    cursor.execute(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
    )
    tables = {str(row[0]) for row in cursor.fetchall()}
    cursor.execute(
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
        "WHERE TRIGGER_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = 'orders'"
    )
    triggers = {str(row[0]) for row in cursor.fetchall()}
    return [f"table {t}" for t in SCHEMA_TABLES if t not in tables] + [
        f"trigger {t}" for t in COUNTING_TRIGGERS if t not in triggers
    ]


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

MIGRATION_LOCK = "orders_service_migrate"

_CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
  version    VARCHAR(64) NOT NULL PRIMARY KEY,
  applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB
"""


def acquire_migration_lock(cursor: Cursor, timeout_seconds: int) -> bool:
    """A server-wide named lock, so two replicas starting together migrate one after the other."""
    cursor.execute("SELECT GET_LOCK(%s, %s)", (MIGRATION_LOCK, timeout_seconds))
    return bool(cursor.fetchone()[0])


def release_migration_lock(cursor: Cursor) -> None:
    cursor.execute("SELECT RELEASE_LOCK(%s)", (MIGRATION_LOCK,))
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
