"""The SQL layer against real MariaDB: block counts stay exact whoever writes, and pages found
through them are the pages OFFSET would give, on any page, after inserts, moves and deletes."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from service.orders import repository, schema
from service.orders import seed as generator
from service.orders.database import connect
from tests.support.shared import SHARED_MYSQL, drop_database, make_database

pytestmark = pytest.mark.integration


@pytest.fixture
def cursor() -> Iterator[Any]:
    url = make_database(SHARED_MYSQL, 0)
    connection = connect(
        __import__("service.config")
        .config.Settings.from_env({"ORDERS_DATABASE_URL": url})
        .database_url
    )
    with connection.cursor() as cur:
        yield cur
    connection.close()
    drop_database(url)


def counts_match_the_table(cursor: Any) -> bool:
    cursor.execute(
        "SELECT bucket, row_count FROM order_buckets WHERE row_count <> 0 ORDER BY bucket"
    )
    kept = list(cursor.fetchall())
    cursor.execute(
        "SELECT id DIV %s, COUNT(*) FROM orders GROUP BY id DIV %s ORDER BY 1",
        (repository.BUCKET_WIDTH, repository.BUCKET_WIDTH),
    )
    return kept == list(cursor.fetchall())


def page_by_offset(cursor: Any, page: int, size: int) -> list[int]:
    cursor.execute(
        "SELECT id FROM orders ORDER BY id LIMIT %s OFFSET %s", (size, (page - 1) * size)
    )
    return [row[0] for row in cursor.fetchall()]


def test_pages_and_counts_stay_exact_through_every_kind_of_write(cursor: Any) -> None:
    rows = list(generator.generate(20_000, seed=1))
    repository.bulk_insert_orders(cursor, rows[:12_000])  # the seed's path
    repository.insert_orders(cursor, rows[12_000:])  # the triggers' path
    rng = random.Random(5)
    cursor.execute(
        "DELETE FROM orders WHERE id IN ({})".format(
            ",".join(str(rng.randrange(1, 20_001)) for _ in range(700))
        )
    )
    cursor.execute("UPDATE orders SET id = id + 50000 WHERE id BETWEEN 4000 AND 4100")
    cursor.execute("UPDATE orders SET status = 'paid' WHERE id < 300")  # ids unchanged
    assert counts_match_the_table(cursor)

    cursor.execute("SELECT COUNT(*) FROM orders")
    total = cursor.fetchone()[0]
    assert repository.count_orders(cursor) == total
    last = -(-total // 10)
    for page in [1, 2, 409, 410, 411, last - 1, last, *rng.sample(range(1, last), 25)]:
        found = [order.id for order in repository.fetch_page(cursor, page, 10)]
        assert found == page_by_offset(cursor, page, 10), page
    assert repository.fetch_page(cursor, last + 1, 10) == []


def test_rows_before_an_id_is_its_rank(cursor: Any) -> None:
    repository.bulk_insert_orders(cursor, list(generator.generate(9_000, seed=2, first_id=10)))
    cursor.execute("DELETE FROM orders WHERE MOD(id, 7) = 0")
    for order_id in (1, 10, 11, 4095, 4096, 4097, 8200, 9009, 10_000_000):
        cursor.execute("SELECT COUNT(*) FROM orders WHERE id < %s", (order_id,))
        (expected,) = cursor.fetchone()
        assert repository.rows_before_id(cursor, order_id) == expected


def test_recount_rebuilds_counts_after_rows_arrive_without_triggers(cursor: Any) -> None:
    repository.insert_orders(cursor, list(generator.generate(100, seed=3)))
    cursor.execute("DELETE FROM order_buckets")
    assert repository.count_orders(cursor) == 0
    repository.recount_buckets(cursor)
    assert repository.count_orders(cursor) == 100
    assert counts_match_the_table(cursor)


def test_migrations_are_idempotent(cursor: Any) -> None:
    cursor.execute("SELECT DATABASE()")
    applied = repository.applied_migrations(cursor)
    assert applied == {version for version, _ in schema.available_migrations()}
    assert schema.migrate(cursor.connection) == []


def test_an_update_that_keeps_ids_runs_no_counting_statement_per_row(cursor: Any) -> None:
    """The move trigger's INSERT ... SELECT (a derived table: one temporary table each time it
    runs) is guarded by IF: a bulk UPDATE that keeps ids, the common write, does no per-row work
    for the counts, while an id change is still counted."""
    repository.bulk_insert_orders(cursor, list(generator.generate(2_000, seed=3)))

    def temporary_tables() -> int:
        cursor.execute("SHOW SESSION STATUS LIKE 'Created_tmp_tables'")
        return int(cursor.fetchone()[1])

    before = temporary_tables()
    cursor.execute("UPDATE orders SET customer_name = 'renamed' WHERE id <= 1000")
    assert cursor.rowcount == 1000
    assert temporary_tables() - before < 10  # the status statements' own, never one per row
    cursor.execute("UPDATE orders SET id = id + 10000 WHERE id BETWEEN 1 AND 500")
    assert counts_match_the_table(cursor)
