"""The store seam: the redis-py client for a ``RedisURL``, whatever its topology.

Every process (API workers, their listener, the invalidator, the inspector, the CLI) takes its
Redis client from ``client()``, so one server, a Sentinel-watched primary and a cluster are
chosen by ``ORDERS_REDIS_URL``'s scheme alone. Each client gives up after ``timeout`` and never
retries on its own (the callers' breaker and retry loops decide), on every topology.

Sentinel: the client asks the Sentinels for the primary on every new connection (so readers
follow a promoted replica without a restart), and checks with ``ROLE`` that the address it was
given is a primary: a Sentinel that lies (or lags) is distrusted and the next one asked; a
Sentinel that is down is skipped. ``primary_identity()`` names the data set a connection
reaches (run id and replication id), so a failover can be noticed by whoever cares (the
invalidator re-takes its fence and rewinds; the listener empties the near cache).
"""

from __future__ import annotations

from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from service.config import RedisURL


def _no_retry(timeout: float | None) -> dict[str, Any]:
    """The policy of every connection: one try, short timeouts, no background health checks."""
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "retry_on_timeout": False,
        "health_check_interval": 0,
    }


def client(url: RedisURL, timeout: float | None, **options: Any) -> redis.Redis:
    """A client of ``url``'s primary (or cluster) that gives up after ``timeout`` seconds."""
    if url.topology == "sentinel":
        return _sentinel_client(url, timeout, **options)
    if url.topology == "cluster":
        return _cluster_client(url, timeout, **options)
    return redis.Redis.from_url(
        url.url, password=url.password or None, **_no_retry(timeout), **options
    )


def _tls_options(url: RedisURL) -> dict[str, Any]:
    return {"ssl": True, **dict(url.options)} if url.tls else {}


# Sentinels whose answer was not a primary, for this process's life: every Sentinel client made
# later (the listener makes one per connection) asks them last.
_DISTRUSTED: set[tuple[str, int]] = set()


def _address(sentinel: redis.Redis) -> tuple[str, int]:
    kwargs = sentinel.connection_pool.connection_kwargs
    return str(kwargs.get("host")), int(kwargs.get("port", 0))


class _CheckedSentinel(Sentinel):
    """Sentinel discovery that asks a Sentinel whose answer was not a primary last."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.sentinels.sort(key=lambda sentinel: _address(sentinel) in _DISTRUSTED)

    def distrust(self, address: tuple[str, int]) -> None:
        _DISTRUSTED.add(address)
        self.sentinels.sort(key=lambda sentinel: _address(sentinel) in _DISTRUSTED)


class _PrimaryConnection(SentinelManagedConnection):
    """A connection to the address the Sentinels named, refused unless ``ROLE`` says primary:
    a lying or lagging Sentinel must not send the cache's writes (or reads) to a replica."""

    def connect_to(self, address: Any) -> None:
        super().connect_to(address)  # type: ignore[no-untyped-call]
        self.send_command("ROLE")  # type: ignore[no-untyped-call]
        role = self.read_response()
        if not role or role[0] not in (b"master", "master"):
            self.disconnect()  # type: ignore[no-untyped-call]
            pool = self.connection_pool
            pool.reset()
            sentinel = pool.sentinel_manager
            if isinstance(sentinel, _CheckedSentinel):
                sentinel.distrust(sentinel_address(sentinel))
            raise redis.ConnectionError(
                f"the Sentinels named {address[0]}:{address[1]} as the primary, but it is not one"
            )


class _PrimarySSLConnection(_PrimaryConnection, SentinelManagedSSLConnection):
    pass


def sentinel_address(sentinel: Sentinel) -> tuple[str, int]:
    """The Sentinel asked first (the one whose last answer was used)."""
    return _address(sentinel.sentinels[0])


def sentinels(url: RedisURL, timeout: float | None) -> _CheckedSentinel:
    """The Sentinels of ``url``, asked with their own password (ORDERS_REDIS_SENTINEL_PASSWORD)
    as the URL's user (none: the Sentinels' default user), or without AUTH when it is empty."""
    return _CheckedSentinel(
        list(url.hosts),
        sentinel_kwargs={
            "username": (url.username or None) if url.sentinel_password else None,
            "password": url.sentinel_password or None,
            # redis.Redis() itself warns on retry_on_timeout (the pool's kwargs do not)
            **{k: v for k, v in _no_retry(timeout).items() if k != "retry_on_timeout"},
            **_tls_options(url),
        },
    )


def _sentinel_client(url: RedisURL, timeout: float | None, **options: Any) -> redis.Redis:
    connection = _PrimarySSLConnection if url.tls else _PrimaryConnection
    tls = _tls_options(url)
    tls.pop("ssl", None)
    return cast(
        redis.Redis,
        sentinels(url, timeout).master_for(  # type: ignore[no-untyped-call]
            url.master_name,
            redis_class=redis.Redis,
            connection_pool_class=SentinelConnectionPool,
            connection_class=connection,
            db=url.db,
            username=url.username or None,
            password=url.password or None,
            **_no_retry(timeout),
            **tls,
            **options,
        ),
    )


class _Cluster(redis.RedisCluster):
    """redis-py's cluster client, routing FCALL by its declared keys as it routes EVAL: the
    stock client asks a node ``COMMAND GETKEYS`` for every FCALL (a round trip per call, which
    made an invalidation step 10-20 times slower than on one server)."""

    def determine_slot(self, *args: Any) -> int | None:
        if str(args[0]).upper() in ("FCALL", "FCALL_RO") and len(args) > 3 and int(args[2]):
            slots: set[int] = {
                self.keyslot(key)  # type: ignore[no-untyped-call]
                for key in args[3 : 3 + int(args[2])]
            }
            if len(slots) != 1:
                raise redis.exceptions.RedisClusterException(
                    f"{args[1]}: keys in {len(slots)} slots (CROSSSLOT)"
                )
            return slots.pop()
        return super().determine_slot(*args)


def _cluster_client(url: RedisURL, timeout: float | None, **options: Any) -> redis.Redis:
    """A cluster client: redis-py follows MOVED and ASK (refreshing its slot map) and waits out
    TRYAGAIN itself; connection errors refresh the map and reach the caller's breaker."""
    from redis.cluster import ClusterNode

    return cast(
        redis.Redis,
        _Cluster(
            startup_nodes=[ClusterNode(h, p) for h, p in url.hosts],  # type: ignore[no-untyped-call]
            username=url.username or None,
            password=url.password or None,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            **_tls_options(url),
            **options,
        ),
    )


def primary_identity(connection: redis.Redis) -> str:
    """Which data set ``connection`` reaches: the server's run id and its replication id. Both
    change when another server is promoted, and when the same server restarts without its data
    or is made a replica of another and then promoted again (its data replaced). Where INFO is
    refused the answer is always ``unknown``: no change is seen, and the chain of steps
    (docs/guarantees.md) still refuses what a failover made wrong. A cluster: which node is
    primary for which slots (CLUSTER NODES, from any node)."""
    try:
        if isinstance(cast(object, connection), redis.RedisCluster):
            nodes = cast(dict[str, dict[str, Any]], cast(Any, connection).cluster_nodes())
            return ",".join(
                sorted(
                    f"{fields['node_id']}:{fields['slots']}"
                    for fields in nodes.values()
                    if "master" in fields["flags"] and fields["slots"]
                )
            )
        info = connection.info("server", "replication")
    except redis.ResponseError:  # INFO refused (an ACL without it): unknown, never "changed"
        return "unknown"
    return f"{info.get('run_id', '')}/{info.get('master_replid', '')}"


__all__ = ["MasterNotFoundError", "client", "primary_identity", "sentinel_address", "sentinels"]
