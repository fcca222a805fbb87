"""What exists in the schema, read from information_schema: the service's tables and counting
triggers, cascading foreign keys, the key columns. The data itself is read and written by
``repository`` (split off to keep each SQL module one concern and under 400 lines).

Every question here costs a few milliseconds and no lock: ``migrate`` asks them before and after
it changes the schema, /readyz and the invalidator ask them every few seconds.
"""

from __future__ import annotations

from service.orders.repository import Cursor

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
    a table swap (RENAME) or DROP + CREATE leaves the triggers behind on the old table.
    Triggers this user may not see (``sees_triggers``) are not reported."""
    cursor.execute(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
    )
    tables = {str(row[0]) for row in cursor.fetchall()}
    triggers = set(COUNTING_TRIGGERS)
    if sees_triggers(cursor):
        cursor.execute(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
            "WHERE TRIGGER_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = 'orders'"
        )
        triggers = {str(row[0]) for row in cursor.fetchall()}
    return [f"table {t}" for t in SCHEMA_TABLES if t not in tables] + [
        f"trigger {t}" for t in COUNTING_TRIGGERS if t not in triggers
    ]


# information_schema.TRIGGERS lists a table's triggers only to a user with TRIGGER on it (the
# api role has none): its own privileges on the server, this database or orders.
_SEES_TRIGGERS = """
SELECT EXISTS (SELECT 1 FROM (
  SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES UNION ALL
  SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES
  WHERE DATABASE() LIKE TABLE_SCHEMA UNION ALL
  SELECT PRIVILEGE_TYPE FROM information_schema.TABLE_PRIVILEGES
  WHERE DATABASE() LIKE TABLE_SCHEMA AND TABLE_NAME = 'orders'
) AS granted WHERE PRIVILEGE_TYPE = 'TRIGGER')
"""


def sees_triggers(cursor: Cursor) -> bool:
    cursor.execute(_SEES_TRIGGERS)
    return bool(cursor.fetchone()[0])


# The block arithmetic needs orders' key to be ``id`` alone, unsigned: -5 DIV 4096 = 0 (block 0,
# beside 1..4095) and -5000 DIV 4096 = -1 does not fit the unsigned ``bucket`` (schema.py).
_KEY_COLUMNS = """
SELECT c.COLUMN_NAME, c.COLUMN_TYPE
FROM information_schema.KEY_COLUMN_USAGE AS k
JOIN information_schema.COLUMNS AS c
  ON c.TABLE_SCHEMA = k.TABLE_SCHEMA AND c.TABLE_NAME = k.TABLE_NAME
 AND c.COLUMN_NAME = k.COLUMN_NAME
WHERE k.TABLE_SCHEMA = DATABASE() AND k.TABLE_NAME = 'orders' AND k.CONSTRAINT_NAME = 'PRIMARY'
ORDER BY k.ORDINAL_POSITION
"""
_INTEGER_TYPES = ("tinyint", "smallint", "mediumint", "int", "bigint")


def key_column_problems(cursor: Cursor) -> list[str]:
    """What is wrong with orders' primary key for the block counts (empty: nothing, or no
    orders table at all, which ``missing_schema_objects`` reports)."""
    cursor.execute(_KEY_COLUMNS)
    columns = [(str(name), str(kind).lower()) for name, kind in cursor.fetchall()]
    if not columns:
        present = orders_table_exists(cursor)
        return ["orders has no primary key (it must be id BIGINT UNSIGNED)"] if present else []
    if [name for name, _ in columns] != ["id"]:
        named = ", ".join(name for name, _ in columns)
        return [f"orders' primary key is ({named}); it must be id BIGINT UNSIGNED alone"]
    kind = columns[0][1]
    if kind.split("(")[0] not in _INTEGER_TYPES or "unsigned" not in kind:
        return [f"orders.id is {kind} (signed or not an integer); it must be BIGINT UNSIGNED"]
    return []


def schema_problems(cursor: Cursor) -> list[str]:
    """Everything that makes the block counts or the binlog miss row changes, described: a
    missing table or counting trigger, a cascading foreign key, an unexpected key column.
    Only information_schema is read (a few milliseconds; /readyz and the invalidator ask)."""
    return (
        missing_schema_objects(cursor)
        + [f"cascading foreign key {key}" for key in cascading_foreign_keys(cursor)]
        + key_column_problems(cursor)
    )


def orders_table_exists(cursor: Cursor) -> bool:
    cursor.execute(
        "SELECT 1 FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'orders'"
    )
    return cursor.fetchone() is not None
