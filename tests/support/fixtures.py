"""Pytest fixtures over `tests.support.servers` (load with `pytest_plugins`).

- `binlog_mariadb` (session): one MariaDB with the binary log on, shared by the session.
- `binlog_database` (function): a fresh database on it, dropped afterwards.
- `throwaway` (function): a factory for private servers a test may stop, kill or pause;
  everything it made is closed at teardown, also when the test fails.
- `mariadb_server`, `redis_server`, `hung_redis` (function): one private server each.

Tests that break a server must use a private one, never `binlog_mariadb`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TypeVar

import pytest

from service.observability import logging as obs_logging
from tests.support.servers import (
    Database,
    HungRedis,
    MariaDBServer,
    ProcessServer,
    RedisServer,
)

S = TypeVar("S", bound=ProcessServer)

__all__ = [
    "ThrowawayServers",
    "binlog_database",
    "binlog_mariadb",
    "hung_redis",
    "mariadb_server",
    "redis_server",
    "restore_logging",
    "throwaway",
]


class ThrowawayServers:
    """Makes private servers for one test and closes all of them at the end."""

    def __init__(self) -> None:
        self._made: list[ProcessServer] = []

    def mariadb(
        self, *, binlog: bool = True, extra_args: Sequence[str] = (), start: bool = True
    ) -> MariaDBServer:
        return self._keep(MariaDBServer.create(binlog=binlog, extra_args=extra_args, start=start))

    def redis(self, *, extra_args: Sequence[str] = (), start: bool = True) -> RedisServer:
        return self._keep(RedisServer.create(extra_args=extra_args, start=start))

    def hung_redis(self) -> HungRedis:
        return self._keep(HungRedis.create())

    def _keep(self, server: S) -> S:
        self._made.append(server)
        return server

    def close(self) -> None:
        errors: list[BaseException] = []
        for server in reversed(self._made):
            try:
                server.close()
            except Exception as exc:  # noqa: BLE001 - close the rest, report after
                errors.append(exc)
        self._made.clear()
        if errors:
            raise errors[0]


@pytest.fixture(scope="session")
def binlog_mariadb() -> Iterator[MariaDBServer]:
    """The session's MariaDB with the binlog on; shared, so never stop or pause it."""
    server = MariaDBServer.create(binlog=True)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def binlog_database(binlog_mariadb: MariaDBServer) -> Iterator[Database]:
    """A fresh, empty database on the session's binlog MariaDB."""
    database = binlog_mariadb.create_database()
    try:
        yield database
    finally:
        if binlog_mariadb.running and not binlog_mariadb.paused:
            binlog_mariadb.drop_database(database.name)


@pytest.fixture
def throwaway() -> Iterator[ThrowawayServers]:
    servers = ThrowawayServers()
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture
def mariadb_server(throwaway: ThrowawayServers) -> MariaDBServer:
    """A private MariaDB (binlog on) that the test may stop, kill, pause and restart."""
    return throwaway.mariadb()


@pytest.fixture
def redis_server(throwaway: ThrowawayServers) -> RedisServer:
    """A private Redis the test may stop, kill, pause and restart."""
    return throwaway.redis()


@pytest.fixture
def hung_redis(throwaway: ThrowawayServers) -> HungRedis:
    """A Redis address that accepts connections and never answers."""
    return throwaway.hung_redis()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure() is process-wide: put structlog and the root logger back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    obs_logging.reset()
