"""Every way out of ``Database.cursor`` reports to the breaker and becomes a clean outage.

The connections are fakes (this is the unit tier: the pool and the breaker are real, MySQL is
not); the real-server cases live in tests/faults.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pymysql
import pytest

from service.breaker import BreakerState, CircuitBreaker
from service.config import DatabaseURL
from service.orders.database import Database, DatabaseUnavailable

URL = DatabaseURL("127.0.0.1", 1, "u", "secret-password", "orders")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeCursor:
    def __init__(self, fail: BaseException | None) -> None:
        self._fail = fail

    def execute(self, _sql: str) -> None:
        if self._fail is not None:
            raise self._fail

    def close(self) -> None:
        pass


class FakeConnection:
    def __init__(self, query_error: BaseException | None = None) -> None:
        self.query_error = query_error
        self._read_timeout = self._write_timeout = 0.1  # what the idle ping adjusts

    def ping(self, reconnect: bool = False) -> None:
        pass

    def cursor(self) -> FakeCursor:
        return FakeCursor(self.query_error)

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


def make_database(
    connect_one: Callable[[], Any], clock: Clock, *, size: int = 1
) -> tuple[Database, CircuitBreaker]:
    breaker = CircuitBreaker("mysql", failures=1, reset_after=1.0, clock=clock)
    database = Database(
        URL,
        timeout=0.1,
        max_concurrency=size,
        pool_timeout=0.01,
        breaker=breaker,
        connect_one=connect_one,
    )
    return database, breaker


def query(database: Database) -> None:
    database.run("ping", lambda cursor: cursor.execute("SELECT 1"))


def open_then_trial(breaker: CircuitBreaker, clock: Clock) -> None:
    breaker.failure()
    clock.now += 1.0
    assert breaker.state is BreakerState.OPEN


@pytest.mark.parametrize(
    "error",
    [
        pymysql.err.OperationalError(2003, "Can't connect"),
        struct.error("unpack requires a buffer of 4 bytes"),  # a cut handshake
        IndexError("index out of range"),
        ConnectionResetError(104, "reset"),
        RuntimeError("something PyMySQL did not expect"),
    ],
)
def test_any_connect_failure_is_an_outage_and_counts_against_mysql(error: Exception) -> None:
    clock = Clock()

    def connect_one() -> Any:
        raise error

    database, breaker = make_database(connect_one, clock)
    with pytest.raises(DatabaseUnavailable) as raised:
        query(database)
    assert "secret-password" not in raised.value.reason
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__
    assert breaker.state is BreakerState.OPEN


@pytest.mark.parametrize(
    "error",
    [
        pymysql.err.OperationalError(2013, "Lost connection"),
        struct.error("bad packet"),
        IndexError("index out of range"),
    ],
)
def test_any_query_failure_is_an_outage_and_counts_against_mysql(error: Exception) -> None:
    database, breaker = make_database(lambda: FakeConnection(error), Clock())
    with pytest.raises(DatabaseUnavailable, match="MySQL query failed"):
        query(database)
    assert breaker.state is BreakerState.OPEN


def test_a_trial_that_succeeds_closes_the_breaker() -> None:
    clock = Clock()
    database, breaker = make_database(FakeConnection, clock)
    open_then_trial(breaker, clock)
    query(database)
    assert breaker.state is BreakerState.CLOSED


def test_a_trial_that_fails_in_an_unexpected_way_reopens_it() -> None:
    clock = Clock()
    database, breaker = make_database(lambda: FakeConnection(struct.error("x")), clock)
    open_then_trial(breaker, clock)
    with pytest.raises(DatabaseUnavailable):
        query(database)
    assert breaker.state is BreakerState.OPEN
    clock.now += 1.0
    assert breaker.allow()  # and a full period later there is a new trial


def test_a_trial_that_finds_every_connection_busy_leaves_mysql_reachable() -> None:
    """The seam bug: a half-open trial ending in PoolTimeout used to report nothing, so the
    breaker stayed half open and refused MySQL for that worker until it restarted. The only
    connection is held straight from the pool here, so no other call's success hides it."""
    clock = Clock()
    database, breaker = make_database(FakeConnection, clock, size=1)
    held = database._pool.connect()
    open_then_trial(breaker, clock)
    with pytest.raises(DatabaseUnavailable, match="busy"):
        query(database)  # the trial: the pool is exhausted
    held.close()
    query(database)  # at once: no restart, and no waiting for the trial to lapse
    assert breaker.state is BreakerState.CLOSED


def test_an_error_in_the_callers_work_that_is_not_an_exception_gives_the_trial_back() -> None:
    clock = Clock()
    database, breaker = make_database(FakeConnection, clock)
    open_then_trial(breaker, clock)
    with pytest.raises(KeyboardInterrupt), database.cursor():
        raise KeyboardInterrupt
    assert breaker.allow()
