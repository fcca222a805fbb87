"""What every command checks before its work, and how it fails: one line naming the target (its
password redacted, nothing a server said), never a driver's traceback."""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
from collections.abc import Iterator

import click

from service.config import Settings

ER_BAD_DB_ERROR = 1049  # MySQL: unknown database


def target(settings: Settings) -> str:
    return f"MySQL {settings.database_url.redacted()}, Redis keys under {settings.cache_prefix}:"


@contextlib.contextmanager
def clear_failures(settings: Settings) -> Iterator[None]:
    """One line naming the target instead of a driver's traceback (its message only: the
    server's own words, never the password, which the redacted URL leaves out)."""
    import pymysql
    import redis

    from service.cache.store import CacheUnavailable
    from service.orders.database import DatabaseUnavailable, failure_reason

    try:
        yield
    except (pymysql.MySQLError, OSError, struct.error) as exc:
        # failure_reason: the error's number and name, never what the server said (database.py)
        raise click.ClickException(
            f"MySQL at {settings.database_url.redacted()}: {failure_reason(exc)}"
        ) from None
    except DatabaseUnavailable as exc:
        raise click.ClickException(
            f"MySQL at {settings.database_url.redacted()}: {exc.reason}"
        ) from None
    except (redis.RedisError, CacheUnavailable) as exc:
        raise click.ClickException(f"Redis at {settings.redis_url.redacted()}: {exc}") from None


def refuse_evicting_redis(settings: Settings) -> None:
    """Exit 2 if Redis' maxmemory-policy may evict the index or the control keys
    (service/cache/eviction.py). A Redis that does not answer yet is not a reason to stay down:
    the cache fails open, and /readyz reports the policy once it answers."""
    from service.cache.eviction import policy_problem
    from service.cache.store import CacheUnavailable
    from service.wiring import build_redis_cache

    cache = build_redis_cache(settings, timeout=max(settings.cache_timeout, 2.0))
    try:
        problem = policy_problem(cache.maxmemory_policy())
    except CacheUnavailable as exc:
        click.echo(f"warning: cannot read Redis' maxmemory-policy yet ({exc})", err=True)
        return
    finally:
        cache.client.close()
    if problem is not None:
        click.echo(f"error: refusing to run: Redis {problem}", err=True)
        sys.exit(2)


def require_free(host: str, port: int) -> None:
    """Fail in one line when another server (often another `make run`) holds the port."""
    try:
        socket.create_server((host, port)).close()
    except OSError as exc:
        raise click.ClickException(
            f"{host}:{port} is in use ({exc.strerror}): is another `make run` or server running?"
        ) from None


def wait_for_mysql(settings: Settings) -> None:
    """Init containers, Jobs and compose start beside MySQL: wait for it (with backoff, up to
    ORDERS_DATABASE_WAIT_TIMEOUT) rather than fail on the first try."""
    import pymysql

    from service.orders.startup import DatabaseWaitTimeout, wait_for_database

    try:
        wait_for_database(settings.database_url, settings.database_wait_timeout)
    except DatabaseWaitTimeout as exc:
        raise click.ClickException(str(exc)) from None
    except pymysql.MySQLError as exc:
        raise click.ClickException(
            f"MySQL at {settings.database_url.redacted()} refused: {exc.args[-1]}"  # scrubbed
        ) from None


def create_database_if_missing(settings: Settings) -> None:
    """A fresh MySQL (tests, a new chart install) may lack the database; create it if allowed."""
    import pymysql

    from service.orders import repository
    from service.orders.database import connect

    try:
        connect(settings.database_url, timeout=5).close()
    except pymysql.err.OperationalError as exc:
        if exc.args[0] != ER_BAD_DB_ERROR:
            raise
        server = connect(settings.database_url, timeout=5, database=None)
        with server, server.cursor() as cursor:
            repository.create_database(cursor, settings.database_url.database)
