"""Waiting for MySQL at start-up: retry with capped exponential backoff and full jitter until a
deadline, instead of failing on the first refusal.

Why a module of its own: in Kubernetes nothing orders start-up. The migrate init containers of the
API and invalidator pods, a seed Job or compose's services start beside a MySQL that may still be
initialising its data directory (minutes on a first MySQL 8.4 start), whose Service may have no
DNS record yet, or whose users the entrypoint has not created yet. mysqladmin's own ``--wait``
retries only "can't connect" (2002/2003) and gives up at once on an unknown host (2005; PyMySQL
reports that as 2003 with the resolver's error); this loop
retries every answer that says "not yet" and stops at once on one that says "never" (a bad
database URL, a client error). Each attempt is logged with the URL redacted: never a password.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pymysql

from service.config import DatabaseURL
from service.observability.logging import get_logger

log = get_logger("service.startup")

# MySQL client and server error numbers that mean "not yet", not "never".
CR_CONNECTION_ERROR = 2002  # socket: server not listening yet
CR_CONN_HOST_ERROR = 2003  # TCP refused or timed out
CR_UNKNOWN_HOST = 2005  # DNS: the Service or its record does not exist yet
CR_SERVER_GONE_ERROR = 2006
CR_SERVER_LOST = 2013  # handshake cut short (the server is starting or restarting)
ER_CON_COUNT_ERROR = 1040  # too many connections
ER_ACCESS_DENIED_ERROR = 1045  # users not created yet by the image's entrypoint / the operator
ER_DBACCESS_DENIED_ERROR = 1044
ER_BAD_DB_ERROR = 1049  # the server answers; the database is created by `migrate`
ER_SERVER_SHUTDOWN = 1053
ER_HOST_NOT_PRIVILEGED = 1130  # the user's host grant not there yet
ER_SERVER_IS_STARTING = 1927  # MariaDB: "connection was killed" during start-up/shutdown

RETRYABLE = frozenset(
    {
        CR_CONNECTION_ERROR,
        CR_CONN_HOST_ERROR,
        CR_UNKNOWN_HOST,
        CR_SERVER_GONE_ERROR,
        CR_SERVER_LOST,
        ER_CON_COUNT_ERROR,
        ER_ACCESS_DENIED_ERROR,
        ER_DBACCESS_DENIED_ERROR,
        ER_SERVER_SHUTDOWN,
        ER_HOST_NOT_PRIVILEGED,
        ER_SERVER_IS_STARTING,
    }
)
# Connection failures that are not MySQLError: PyMySQL raises these on a broken handshake.
HANDSHAKE_ERRORS: tuple[type[BaseException], ...] = (struct.error, IndexError, OSError, EOFError)


class DatabaseWaitTimeout(RuntimeError):
    """MySQL did not answer before the deadline; the message carries the last reason."""


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff
    and Jitter"): many pods restarting together spread their attempts instead of stampeding."""

    initial: float = 0.5
    cap: float = 10.0
    factor: float = 2.0

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        ceiling = min(self.cap, self.initial * self.factor ** max(attempt - 1, 0))
        return max(0.05, ceiling * rng())


def _reason(exc: BaseException) -> tuple[int | None, str]:
    """Error number and message; never the exception's repr (a driver's args could hold secrets)."""
    if isinstance(exc, pymysql.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0], str(exc.args[-1]) if len(exc.args) > 1 else type(exc).__name__
    return None, type(exc).__name__


def wait_for_database(
    url: DatabaseURL,
    timeout: float,
    *,
    connect: Callable[..., Any] | None = None,
    backoff: Backoff = Backoff(),
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    attempt_timeout: float = 5.0,
) -> int:
    """Return once MySQL at ``url`` accepts a login (an unknown database counts: the server
    answers and ``migrate`` creates it), after how many attempts. Raise DatabaseWaitTimeout when
    ``timeout`` seconds pass without that; re-raise at once an error no wait can fix."""
    if connect is None:
        from service.orders.database import connect as connect_database

        connect = connect_database
    deadline = clock() + timeout
    attempt = 0
    while True:
        attempt += 1
        try:
            connect(url, timeout=min(attempt_timeout, max(deadline - clock(), 0.5))).close()
        except pymysql.MySQLError as exc:
            code, message = _reason(exc)
            if code == ER_BAD_DB_ERROR:
                log.info("mysql answers; database missing", url=url, attempt=attempt)
                return attempt
            if code not in RETRYABLE:
                raise
            reason = f"{code} {message}"
        except HANDSHAKE_ERRORS as exc:
            reason = _reason(exc)[1]
        else:
            log.info("mysql answers", url=url, attempt=attempt)
            return attempt
        remaining = deadline - clock()
        if remaining <= 0:
            raise DatabaseWaitTimeout(
                f"MySQL at {url.redacted()} did not answer within {timeout:g} s "
                f"({attempt} attempts); last error: {reason}"
            ) from None
        delay = min(backoff.delay(attempt), remaining)
        log.warning(
            "mysql not ready; retrying",
            url=url,
            attempt=attempt,
            error=reason,
            retry_in=round(delay, 2),
            remaining=round(remaining, 1),
        )
        sleep(delay)
