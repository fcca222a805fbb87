"""MySQL connections for the request path: a bounded pool, hard timeouts and a circuit breaker.

The pool is SQLAlchemy's QueuePool (pre-ping, recycle, bounded size with a checkout timeout): its
size is the cap on concurrent MySQL queries per worker, so a Redis outage cannot flatten MySQL.
Connections use autocommit, so a pooled connection never keeps reading an old snapshot.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import pymysql
from pymysql.constants import CR, ER
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import QueuePool

from service.breaker import CircuitBreaker
from service.compat.pymysql import HookedConnection, socket_timeouts
from service.config import DatabaseURL
from service.observability import metrics, tracing

T = TypeVar("T")
PING_AFTER_IDLE_SECONDS = 1.0
PING_TIMEOUT_SECONDS = 0.1
READ_ONLY_SESSION = "SET SESSION TRANSACTION READ ONLY"


class Address(Protocol):
    """Where a server is and who to log in as (``DatabaseURL`` fits; ``database`` and ``ssl``
    are read when present)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def user(self) -> str: ...
    @property
    def password(self) -> str: ...


class DatabaseUnavailable(Exception):
    """MySQL cannot answer now (down, slow, or every connection busy). Maps to 503."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Authentication plugins that send the password itself to the server (PyMySQL answers them):
# over plain TCP anyone who answers on MySQL's address, or sits on the path, reads it.
CLEARTEXT_PLUGINS = frozenset((b"mysql_clear_password", b"dialog"))
KNOWN_PLUGINS = CLEARTEXT_PLUGINS | {
    b"mysql_native_password",
    b"caching_sha2_password",
    b"sha256_password",
    b"client_ed25519",
}
CR_AUTH_PLUGIN_ERR = 2061  # the client refused the server's authentication method
# Error numbers and their names (PyMySQL's constants): what the service says instead of the text
# a server sent, which a hostile or impersonated server fills with anything.
_ERROR_NAMES = {
    value: name
    for module in (ER, CR)
    for name, value in vars(module).items()
    if name.isupper() and isinstance(value, int)
}


class ClearTextRefused(pymysql.err.OperationalError):
    """The server asked for the password in clear text on a connection without TLS."""


def scrubbed(exc: pymysql.MySQLError) -> pymysql.MySQLError:
    """The same error with the server's words replaced by the error's number and name."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    name = _ERROR_NAMES.get(code, "unknown error")
    return type(exc)(code, f"MySQL error {code} ({name}; the server's text is not shown)")


class GuardedConnection(HookedConnection):
    """PyMySQL's connection, except that it refuses to send the password in clear text
    (``mysql_clear_password``, PAM's ``dialog``) unless the connection is TLS (PyMySQL answers
    a server's switch to those with the password, TLS or not), and that an error a server sends
    keeps its number but not its text, so nothing a server says reaches a log, stderr or a
    /readyz body. Every connection the service opens, the binlog stream's included, is one."""

    def process_auth(self, plugin_name: Any, auth_packet: Any, handler: Any = None) -> Any:
        name = plugin_name if isinstance(plugin_name, bytes) else str(plugin_name).encode()
        if name not in KNOWN_PLUGINS:
            raise pymysql.err.OperationalError(
                CR_AUTH_PLUGIN_ERR, "the server asked for an authentication method not supported"
            )
        if name in CLEARTEXT_PLUGINS and not self.uses_tls:
            raise ClearTextRefused(
                CR_AUTH_PLUGIN_ERR,
                f"the server asked for the password in clear text ({name.decode()}) on a "
                "connection without TLS; refused (use TLS: ?ssl_ca=... in the URL)",
            )
        return super().process_auth(plugin_name, auth_packet, handler)

    def read_packet(self, *packet_type: Any) -> Any:
        try:
            return super().read_packet(*packet_type)
        except pymysql.MySQLError as exc:
            raise scrubbed(exc) from None


def connect(
    url: DatabaseURL | Address,
    timeout: float | None = None,
    *,
    connection_class: type[GuardedConnection] | None = None,
    **options: Any,
) -> Any:
    """One PyMySQL connection in UTC with autocommit; ``timeout`` bounds connect, read and write.
    The only way the service opens one: ``options`` override the defaults (the binlog library
    passes its own), ``connection_class`` is a ``GuardedConnection``, so the password goes to the
    server in clear only over TLS, and TLS verifies the server as the URL says."""
    arguments: dict[str, Any] = {
        "host": url.host,
        "port": url.port,
        "user": url.user,
        "password": url.password,
        "database": getattr(url, "database", None),
        "charset": "utf8mb4",
        "autocommit": True,
        "connect_timeout": timeout or 10,
        "read_timeout": timeout,
        "write_timeout": timeout,
        "init_command": "SET time_zone = '+00:00'",
        # None: plain TCP; else CA, client cert and host name check (service/config/urls.py)
        "ssl": getattr(url, "ssl", None),
    }
    arguments.update(options)
    return tracing.traced_connection((connection_class or GuardedConnection)(**arguments))


def _note_idle_since(_connection: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(connection: Any, record: Any, _proxy: Any) -> None:
    """Check a connection that sat idle (MySQL may have restarted or closed it meanwhile); the
    pool replaces one that fails. Busy connections skip the round trip. The ping gets its own
    short timeout, so a hung MySQL costs 0.1 s here plus one reconnect, not two full timeouts."""
    if time.monotonic() - record.info.get("idle_since", 0.0) < PING_AFTER_IDLE_SECONDS:
        return
    try:
        with socket_timeouts(connection, PING_TIMEOUT_SECONDS):
            connection.ping(reconnect=False)
    except Exception as exc:  # noqa: BLE001 - any failure: let the pool replace the connection
        raise DisconnectionError(failure_reason(exc)) from None


class Database:
    """The request path's access to MySQL: ``db.run("page", fn)`` runs ``fn(cursor)`` on a pooled
    connection, timed, behind the breaker and the concurrency cap."""

    def __init__(
        self,
        url: DatabaseURL,
        *,
        timeout: float,
        max_concurrency: int,
        pool_timeout: float,
        breaker: CircuitBreaker,
        connect_one: Callable[[], Any] | None = None,
    ) -> None:
        self._url = url
        self._timeout = timeout
        self.breaker = breaker
        self._pool = QueuePool(
            connect_one or self._new_connection,
            pool_size=max_concurrency,
            max_overflow=0,
            timeout=pool_timeout,
            recycle=1800,
            reset_on_return="rollback",
        )
        event.listen(self._pool, "checkin", _note_idle_since)
        event.listen(self._pool, "checkout", _ping_if_idle)

    def _new_connection(self) -> Any:
        """A READ ONLY session: the request path only reads, and a read-only transaction refuses
        locking reads (``SELECT ... FOR UPDATE``), which MariaDB's SELECT grant allows."""
        connection = connect(self._url, timeout=self._timeout)
        try:
            with connection.cursor() as cursor:
                cursor.execute(READ_ONLY_SESSION)
        except BaseException:
            connection.close()
            raise
        return connection

    @contextmanager
    def cursor(self) -> Iterator[Any]:
        """A cursor on a pooled connection. Every way out reports to the breaker exactly once,
        and every failure becomes ``DatabaseUnavailable``: PyMySQL raises more than MySQLError
        on a broken server (``struct.error`` or ``IndexError`` on a cut handshake)."""
        if not self.breaker.allow():
            raise DatabaseUnavailable("MySQL is failing; not trying for a moment")
        try:
            connection = self._pool.connect()
        except PoolTimeout:
            self.breaker.abandon()  # says nothing about MySQL itself
            metrics.count_db_error(metrics.DbError.BUSY)
            raise DatabaseUnavailable("every MySQL connection of this worker is busy") from None
        except Exception as exc:  # noqa: BLE001 - any driver failure is an outage, never a 500
            self._failed(metrics.DbError.CONNECT)
            raise DatabaseUnavailable(f"cannot connect to MySQL: {failure_reason(exc)}") from None
        try:
            cursor = connection.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
        except Exception as exc:  # noqa: BLE001 - as above: a clean 503, and the breaker knows
            connection.invalidate()
            self._failed(metrics.DbError.QUERY)
            raise DatabaseUnavailable(f"MySQL query failed: {failure_reason(exc)}") from None
        except BaseException:
            connection.invalidate()  # e.g. GeneratorExit or KeyboardInterrupt mid-query
            self.breaker.abandon()
            raise
        finally:
            connection.close()  # back to the pool (or discarded when invalidated)
        self.breaker.success()

    def run(self, query_name: str, work: Callable[[Any], T]) -> T:
        """Run ``work(cursor)`` and record its duration as ``query_name``."""
        started = time.perf_counter()
        with self.cursor() as cursor:
            result = work(cursor)
        metrics.observe_db_query(query_name, time.perf_counter() - started)
        return result

    def _failed(self, kind: metrics.DbError) -> None:
        metrics.count_db_error(kind)
        self.breaker.failure()

    def close(self) -> None:
        self._pool.dispose()


def failure_reason(exc: BaseException) -> str:
    """A short, log-safe reason: the error's number and name (``GuardedConnection`` keeps no
    server text), or the exception's type and text."""
    if isinstance(exc, pymysql.MySQLError) and exc.args:
        return str(exc.args[-1])
    return f"{type(exc).__name__}: {exc}"


class Connection:
    """One MySQL connection for a background process (the invalidator), opened on first use and
    reopened after a failure: ``run(fn)`` runs ``fn(cursor)``; MySQL errors propagate."""

    def __init__(self, url: DatabaseURL, timeout: float) -> None:
        self._url = url
        self._timeout = timeout
        self._connection: Any = None

    def run(self, work: Callable[[Any], T]) -> T:
        if self._connection is None:
            self._connection = connect(self._url, timeout=self._timeout)
        try:
            with self._connection.cursor() as cursor:
                return work(cursor)
        except pymysql.MySQLError:
            self.close()
            raise

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(pymysql.MySQLError):  # a broken one may fail to close
                connection.close()
