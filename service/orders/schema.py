"""Versioned migrations: the SQL files in ``migrations/``, applied in name order, each once.

Safe to run twice and from two replicas at once: a MySQL named lock serialises runners, and the
``schema_migrations`` table records what is applied. A version number is not proof that its
objects still exist: a table swap (``RENAME TABLE orders TO orders_old, orders_new TO orders``)
or DROP + CREATE leaves the counting triggers behind, so after the versions ``migrate`` checks
what exists and, if a table or trigger is missing, re-runs every (re-runnable) migration and
rebuilds the block counts.

Foreign keys on ``orders`` with a cascading action are refused (``CascadingForeignKeys``):
InnoDB applies cascades inside the engine, so the changed orders rows reach neither the row
binlog nor the triggers, and neither the cache nor the block counts could follow them. So is a
primary key other than ``id`` unsigned (``UnexpectedKeyColumns``): the block arithmetic
(``id DIV 4096`` into an unsigned block number) has no place for a negative id. Refused rather
than handled: ids come from AUTO_INCREMENT and are never negative by design, and handling them
would change every block, page and trigger for a case no order has. Both refusals name what to
change; both are also reported at run time (``catalog.schema_problems``: /readyz and the
invalidator), since MySQL accepts either after ``migrate`` has run.

Only ``migrate`` creates tables or triggers. The invalidator never does: an operator's two-step
change (``RENAME TABLE orders TO orders_old``, later ``... orders_new TO orders``) must not find a
fresh empty ``orders`` in its way (service/invalidation/repair.py).
"""

from __future__ import annotations

import re
from importlib.resources import files

import pymysql

from service.orders import catalog, repository

_STATEMENT_END = re.compile(r";\s*$", re.MULTILINE)
LOCK_TIMEOUT_SECONDS = 60


def available_migrations() -> list[tuple[str, list[str]]]:
    """(version, statements) of every migration file, in order."""
    folder = files("service.orders").joinpath("migrations")
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            found.append((entry.name.removesuffix(".sql"), split_statements(entry.read_text())))
    return found


def split_statements(sql: str) -> list[str]:
    """Statements end with ``;`` at the end of a line; ``--`` comment lines are dropped."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in _STATEMENT_END.split("\n".join(lines)) if s.strip()]


class SchemaRefused(RuntimeError):
    """The schema has something the cache and the block counts cannot follow; the message says
    what and what to change."""


class CascadingForeignKeys(SchemaRefused):
    """``orders`` has foreign keys whose cascades would change rows unseen; the message names
    them and what to do."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__(
            "orders has foreign keys with cascading actions, which change orders rows without "
            "binlog row events or triggers (the cache and the block counts would drift): "
            + "; ".join(keys)
            + ". Drop them or make them ON DELETE/UPDATE RESTRICT, and delete child orders "
            "explicitly."
        )
        self.keys = keys


class UnexpectedKeyColumns(SchemaRefused):
    """orders' primary key is not ``id`` alone, an unsigned integer."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            "; ".join(problems) + ". The block counts number blocks as id DIV 4096 in an "
            "unsigned column, so negative or composite keys would be counted in the wrong "
            "block or fail in the trigger. Restore it with: ALTER TABLE orders MODIFY id "
            "BIGINT UNSIGNED NOT NULL AUTO_INCREMENT"
        )
        self.problems = problems


def refuse_cascading_foreign_keys(cursor: repository.Cursor) -> None:
    keys = catalog.cascading_foreign_keys(cursor)
    if keys:
        raise CascadingForeignKeys(keys)


def refuse_unexpected_keys(cursor: repository.Cursor) -> None:
    problems = catalog.key_column_problems(cursor)
    if problems:
        raise UnexpectedKeyColumns(problems)


def migrate(connection: pymysql.Connection) -> list[str]:
    """Apply what is missing; returns the versions applied (and repairs made) by this call."""
    applied_now = []
    with connection.cursor() as cursor:
        if not repository.acquire_migration_lock(cursor, LOCK_TIMEOUT_SECONDS):
            raise TimeoutError("another migration run held the lock for 60 s")
        try:
            refuse_unexpected_keys(cursor)
            done = repository.applied_migrations(cursor)
            for version, statements in available_migrations():
                if version not in done:
                    repository.apply_migration(cursor, version, statements)
                    applied_now.append(version)
            if missing := _restore_missing(cursor):
                applied_now.append(f"repaired ({', '.join(missing)} restored, counts rebuilt)")
            refuse_cascading_foreign_keys(cursor)
        finally:
            repository.release_migration_lock(cursor)
    return applied_now


def _restore_missing(cursor: repository.Cursor) -> list[str]:
    """Re-run every migration (each is re-runnable) and rebuild the counts if a table or a
    counting trigger is missing; returns what was missing."""
    missing = catalog.missing_schema_objects(cursor)
    if missing:
        for version, statements in available_migrations():
            repository.apply_migration(cursor, version, statements)
        repository.recount_buckets(cursor)
    return missing
