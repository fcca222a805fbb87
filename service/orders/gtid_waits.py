"""GTID waits and states, in both dialects: every GTID statement the request path sends.

A replica may serve a fill only once it has applied the GTID state the invalidator recorded
with its last drop (docs/guarantees.md, "MySQL replicas"). MariaDB names a state
``domain-server-seq`` per domain and waits with ``MASTER_GTID_WAIT`` (0 reached, -1 timed out,
NULL for a NULL list); MySQL names a set ``uuid:1-100,uuid2:1-5`` and waits with
``WAIT_FOR_EXECUTED_GTID_SET`` (0 reached, 1 timed out). MySQL 8.4 cannot run on this machine:
its statements live here beside MariaDB's and are tested against its recorded answers.
"""

from __future__ import annotations

import re
from typing import Any, Literal

Dialect = Literal["mariadb", "mysql"]
DIALECTS: tuple[Dialect, ...] = ("mariadb", "mysql")
# The state the invalidator writes when a fill must read the primary (a transaction half read,
# a repair of the block counts not yet past, a binlog without GTIDs).
PRIMARY_ONLY = "-"
# Never 0: to some of these functions a zero timeout means "no timeout" (MariaDB's
# MASTER_POS_WAIT documents it), and a fill must never wait without bound.
MIN_WAIT_SECONDS = 0.001

_MARIADB_STATE = re.compile(r"\d+-\d+-\d+(,\d+-\d+-\d+)*")
_UUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_MYSQL_SET = re.compile(
    rf"{_UUID}(:[A-Za-z0-9_]+)?(:\d+(-\d+)?)+(,\s*{_UUID}(:[A-Za-z0-9_]+)?(:\d+(-\d+)?)+)*"
)

_WAIT = {
    "mariadb": "SELECT MASTER_GTID_WAIT(%s, %s)",
    "mysql": "SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)",
}
_REACHED = 0  # both dialects answer 0 when the replica has applied the state


def dialect_of(state: str) -> Dialect | None:
    """Which server wrote ``state``, from its form; None when it is neither (or primary-only)."""
    if _MARIADB_STATE.fullmatch(state):
        return "mariadb"
    if _MYSQL_SET.fullmatch(state):
        return "mysql"
    return None


def wait_statement(state: str, timeout: float) -> tuple[str, tuple[str, float]] | None:
    """The statement (and its arguments) that waits up to ``timeout`` seconds for ``state`` on
    a replica; None when ``state`` names nothing a replica can wait for (read the primary)."""
    dialect = dialect_of(state)
    if dialect is None:
        return None
    return _WAIT[dialect], (state, max(timeout, MIN_WAIT_SECONDS))


def reached(answer: Any) -> bool:
    """Whether a wait's answer says the replica has applied the state (a timeout, NULL, or an
    answer of any other form says it has not)."""
    if isinstance(answer, tuple | list):
        answer = answer[0] if answer else None
    try:
        return answer is not None and int(answer) == _REACHED
    except (TypeError, ValueError):
        return False


def wait_for(cursor: Any, state: str, timeout: float) -> bool:
    """Wait on ``cursor``'s replica for ``state``; True once it has applied it."""
    statement = wait_statement(state, timeout)
    if statement is None:
        return False
    sql, arguments = statement
    cursor.execute(sql, arguments)
    return reached(cursor.fetchone())


# The newest heartbeat a server holds: on the primary and on a replica, their difference is how
# far the replica is behind (pt-heartbeat's measure; only SELECT on the schema is needed).
LATEST_HEARTBEAT = "SELECT UNIX_TIMESTAMP(MAX(written_at)) FROM heartbeat"


def latest_heartbeat(cursor: Any) -> float | None:
    """Unix seconds of the newest heartbeat row on ``cursor``'s server (None: no row yet)."""
    cursor.execute(LATEST_HEARTBEAT)
    row = cursor.fetchone()
    return float(row[0]) if row and row[0] is not None else None


# The primary's own GTID state now: what a replica must reach to have seen everything committed
# so far (the invalidator's repairs hold replica fills until its stream passes it).
_EXECUTED = {
    "mariadb": "SELECT @@GLOBAL.gtid_binlog_pos",
    "mysql": "SELECT @@GLOBAL.gtid_executed",
}


def executed_statement(dialect: Dialect) -> str:
    return _EXECUTED[dialect]
