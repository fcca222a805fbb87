"""DDL read as the server reads it (issue 18, case 3): which statements reset the orders table,
which of those also mean the block counts must be rebuilt, and names compared as the server's
``lower_case_table_names`` says."""

from __future__ import annotations

import pytest

from service.invalidation import planner
from service.invalidation.statements import recount_after, statement_changes


def _resets_orders(query: str, *, fold_case: bool = False, schema: str = "shop") -> bool:
    changes = statement_changes(query, schema, fold_case=fold_case) or []
    return planner.order_changes(changes, "shop").reset


def _recounts(query: str, *, fold_case: bool = False) -> bool:
    changes = statement_changes(query, "shop", fold_case=fold_case) or []
    return planner.order_changes(changes, "shop").recount


@pytest.mark.parametrize(
    "query",
    [
        "ALTER TABLE arch EXCHANGE PARTITION p0 WITH TABLE orders",
        "ALTER TABLE shop.arch EXCHANGE PARTITION p0 WITH TABLE `orders` WITHOUT VALIDATION",
        "ALTER TABLE orders_new RENAME TO orders",
        "ALTER TABLE orders_new RENAME orders",
        "ALTER TABLE orders_new RENAME AS shop.orders",
        "ALTER TABLE orders RENAME TO orders_old",
        "ALTER TABLE orders TRUNCATE PARTITION p0",
        "ALTER TABLE orders DROP PARTITION p0",
        "ALTER TABLE orders REORGANIZE PARTITION p0 INTO (PARTITION p0 VALUES LESS THAN (10))",
        "ALTER TABLE orders ENGINE = InnoDB",
        "ALTER TABLE orders MODIFY id BIGINT NOT NULL AUTO_INCREMENT",
        "TRUNCATE TABLE orders",
        "TRUNCATE orders",
        "RENAME TABLE orders TO orders_old, orders_new TO orders",
        "DROP TABLE orders",
        "DROP TABLE IF EXISTS other, orders",
        "CREATE TABLE orders LIKE orders_shape",
        "CREATE OR REPLACE TABLE orders (id BIGINT UNSIGNED PRIMARY KEY)",
        "DROP TRIGGER orders_count_insert",
        "DROP TRIGGER IF EXISTS shop.orders_count_move",
        "CREATE TRIGGER extra AFTER INSERT ON orders FOR EACH ROW SET @x = 1",
        "CREATE DEFINER=`root`@`%` TRIGGER extra AFTER INSERT ON orders FOR EACH ROW SET @x = 1",
        "LOAD DATA INFILE '/tmp/o.csv' INTO TABLE orders",
        "HANDLER orders OPEN",  # unknown to the parser: the safe side
    ],
)
def test_every_statement_that_can_change_rows_unseen_resets_and_recounts(query: str) -> None:
    assert _resets_orders(query)
    assert _recounts(query)


@pytest.mark.parametrize(
    ("query", "fold_case"),
    [
        ("TRUNCATE TABLE Orders", True),
        ("TRUNCATE TABLE SHOP.ORDERS", True),
        ("ALTER TABLE arch EXCHANGE PARTITION p0 WITH TABLE `ORDERS`", True),
    ],
)
def test_names_are_compared_as_lower_case_table_names_says(query: str, fold_case: bool) -> None:
    assert _resets_orders(query, fold_case=fold_case)
    assert not _resets_orders(query, fold_case=False)  # lower_case_table_names=0: another table


def test_the_default_schema_is_folded_too() -> None:
    assert _resets_orders("TRUNCATE TABLE Orders", fold_case=True, schema="SHOP")


@pytest.mark.parametrize(
    "query",
    [
        "UPDATE orders SET status = 'paid' WHERE id = 5",  # statement logged: triggers ran
        "INSERT INTO orders (id) VALUES (5)",
        "DELETE FROM orders WHERE id = 5",
    ],
)
def test_statement_logged_dml_resets_without_a_recount(query: str) -> None:
    assert _resets_orders(query)
    assert not _recounts(query)


@pytest.mark.parametrize(
    "query",
    [
        "TRUNCATE TABLE notes",
        "ALTER TABLE notes ADD COLUMN x INT",
        "GRANT SELECT ON shop.* TO 'a'@'%'",
        "CREATE INDEX by_status ON orders (status)",
        "DROP PROCEDURE IF EXISTS p",
        "CREATE TABLE orders_new LIKE orders",  # a shadow table: orders is only read
        "CREATE TABLE orders_copy AS SELECT * FROM orders",
    ],
)
def test_statements_that_cannot_change_orders_rows_leave_it_alone(query: str) -> None:
    assert not _resets_orders(query)


def test_recount_after_is_false_for_transaction_outcomes_and_dml() -> None:
    assert not recount_after("XA COMMIT 'x'")
    assert not recount_after("UPDATE orders SET status = 'paid'")
    assert recount_after("/* gh-ost */ RENAME TABLE orders TO o_old, o_new TO orders")
