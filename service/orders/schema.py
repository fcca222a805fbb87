"""Versioned migrations: the SQL files in ``migrations/``, applied in name order, each once.

Safe to run twice and from two replicas at once: a MySQL named lock serialises runners, and the
``schema_migrations`` table records what is applied.
"""

from __future__ import annotations

import re
from importlib.resources import files

import pymysql

from service.orders import repository

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


def migrate(connection: pymysql.Connection) -> list[str]:
    """Apply what is missing; returns the versions applied by this call."""
    applied_now = []
    with connection.cursor() as cursor:
        if not repository.acquire_migration_lock(cursor, LOCK_TIMEOUT_SECONDS):
            raise TimeoutError("another migration run held the lock for 60 s")
        try:
            done = repository.applied_migrations(cursor)
            for version, statements in available_migrations():
                if version not in done:
                    repository.apply_migration(cursor, version, statements)
                    applied_now.append(version)
        finally:
            repository.release_migration_lock(cursor)
    return applied_now
