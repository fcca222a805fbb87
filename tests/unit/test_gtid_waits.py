"""GTID statements of both dialects, read against answers recorded from the servers.

MariaDB's answers were recorded from MariaDB 10.11 (``SELECT MASTER_GTID_WAIT(...)``); MySQL's
are the values its manual documents for WAIT_FOR_EXECUTED_GTID_SET (8.4 cannot run here).
"""

from __future__ import annotations

from typing import Any

import pytest

from service.orders import gtid_waits

MYSQL_SET = "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-57,4C2D0A1E-71CA-11E1-9E33-C80AA9429562:1-5"


@pytest.mark.parametrize(
    ("state", "dialect"),
    [
        ("0-1-100", "mariadb"),
        ("0-1-100,1-2-7", "mariadb"),
        ("3E11FA47-71CA-11E1-9E33-C80AA9429562:23", "mysql"),
        (MYSQL_SET, "mysql"),
        ("3E11FA47-71CA-11E1-9E33-C80AA9429562:tag:1-4", "mysql"),  # 8.4's tagged GTIDs
        ("", None),
        ("-", None),  # primary-only
        ("0-1", None),
        ("0-1-2'; DROP TABLE orders; --", None),
    ],
)
def test_a_state_names_its_dialect_by_its_form(state: str, dialect: str | None) -> None:
    assert gtid_waits.dialect_of(state) == dialect


def test_each_dialect_waits_with_its_own_function_and_a_bounded_timeout() -> None:
    assert gtid_waits.wait_statement("0-1-5", 0.25) == (
        "SELECT MASTER_GTID_WAIT(%s, %s)",
        ("0-1-5", 0.25),
    )
    sql, (state, timeout) = gtid_waits.wait_statement(MYSQL_SET, 0) or ("", ("", 0.0))
    assert sql == "SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)"
    assert state == MYSQL_SET
    assert timeout == gtid_waits.MIN_WAIT_SECONDS  # never 0: some versions read it as "forever"


@pytest.mark.parametrize("state", ["", "-", "junk"])
def test_nothing_to_wait_for_means_no_statement(state: str) -> None:
    assert gtid_waits.wait_statement(state, 1.0) is None


@pytest.mark.parametrize(
    ("answer", "reached"),
    [
        ((0,), True),  # MariaDB and MySQL: reached
        ((-1,), False),  # MariaDB: timed out
        ((1,), False),  # MySQL: timed out
        ((None,), False),  # MariaDB: NULL list; MySQL: NULL argument
        (None, False),  # no row
        (("0",), True),  # a text protocol answer
        (("x",), False),
    ],
)
def test_wait_answers_read_as_recorded(answer: Any, reached: bool) -> None:
    assert gtid_waits.reached(answer) is reached


class Cursor:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.executed: list[tuple[str, Any]] = []

    def execute(self, sql: str, args: Any = None) -> None:
        self.executed.append((sql, args))

    def fetchone(self) -> Any:
        return self.answer


def test_wait_for_sends_one_statement_with_the_state_as_a_parameter() -> None:
    cursor = Cursor((0,))
    assert gtid_waits.wait_for(cursor, "0-1-9", 0.5)
    assert cursor.executed == [("SELECT MASTER_GTID_WAIT(%s, %s)", ("0-1-9", 0.5))]
    assert not gtid_waits.wait_for(Cursor((-1,)), "0-1-9", 0.5)
    idle = Cursor((0,))
    assert not gtid_waits.wait_for(idle, "-", 0.5)
    assert idle.executed == []


def test_the_lag_probe_reads_the_newest_heartbeat() -> None:
    assert gtid_waits.latest_heartbeat(Cursor((1700000000.5,))) == 1700000000.5
    assert gtid_waits.latest_heartbeat(Cursor((None,))) is None
