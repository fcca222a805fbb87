"""The start-up wait's decisions (pure logic, a fake clock and a scripted connect)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from service.config import DatabaseURL
from service.orders.startup import Backoff, DatabaseWaitTimeout, wait_for_database

URL = DatabaseURL("db", 3306, "orders", "pw-never-shown", "orders")


class Script:
    """connect() that raises the scripted errors in turn, then succeeds; time moves on sleep."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors: Iterator[BaseException] = iter(errors)
        self.now = 0.0
        self.calls = 0

    def connect(self, _url: DatabaseURL, timeout: float) -> Any:
        self.calls += 1
        error = next(self.errors, None)
        if error is not None:
            raise error
        return self

    def close(self) -> None:
        pass

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def clock(self) -> float:
        return self.now


def run(script: Script, timeout: float = 60) -> int:
    return wait_for_database(
        URL, timeout, connect=script.connect, sleep=script.sleep, clock=script.clock
    )


def op(code: int, message: str = "x") -> pymysql.err.OperationalError:
    return pymysql.err.OperationalError(code, message)


def test_not_yet_answers_are_retried_until_one_succeeds() -> None:
    script = Script(op(2003), op(2005), op(1045, "Access denied"), struct.error("short"))
    assert run(script) == 5


def test_an_unknown_database_means_the_server_answers() -> None:
    assert run(Script(op(2003), op(1049, "Unknown database"))) == 2


def test_an_error_no_wait_can_fix_is_raised_at_once() -> None:
    script = Script(op(1064, "syntax"))
    with pytest.raises(pymysql.err.OperationalError):
        run(script)
    assert script.calls == 1


def test_the_deadline_ends_the_wait_with_the_last_reason_and_no_password() -> None:
    script = Script(*[op(2003, "Can't connect")] * 1000)
    with pytest.raises(DatabaseWaitTimeout) as raised:
        run(script, timeout=30)
    message = str(raised.value)
    assert "within 30 s" in message
    assert "2003 Can't connect" in message
    assert "pw-never-shown" not in message
    assert script.now <= 30.0 + 1e-9


def test_backoff_grows_to_its_cap_with_full_jitter() -> None:
    backoff = Backoff(initial=0.5, cap=10.0)
    assert [backoff.delay(n, rng=lambda: 1.0) for n in (1, 2, 3, 6, 20)] == [
        0.5,
        1.0,
        2.0,
        10.0,
        10.0,
    ]
    assert backoff.delay(20, rng=lambda: 0.0) == 0.05  # never a busy loop
