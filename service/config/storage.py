"""Settings of the two stores: MySQL (the truth) and Redis (the cache in front of it)."""

from __future__ import annotations

from dataclasses import dataclass

from service.config.declare import setting
from service.config.parsers import (
    boolean,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    prefix,
)
from service.config.urls import DatabaseURL, RedisURL, database_url, database_urls, redis_url


@dataclass(frozen=True)
class DatabaseSettings:
    """MySQL/MariaDB: where the orders are read from, and how long the service waits for it."""

    database_url: DatabaseURL = setting(
        "mysql://root@127.0.0.1:3306/orders",
        database_url,
        "MySQL/MariaDB to read orders from: mysql://user:password@host:3306/database.",
        secret=True,
    )
    database_password: str = setting(
        "",
        str,
        "Overrides the password in ORDERS_DATABASE_URL (for a Kubernetes Secret).",
        secret=True,
    )
    database_timeout: float = setting(
        "0.4",
        positive_float,
        "Connect, read and write timeout of every request-path MySQL call, in seconds (a ping "
        "plus a reconnect stay under one second).",
    )
    database_max_concurrency: int = setting(
        "4",
        positive_int,
        "MySQL queries one worker process runs at once; more wait, then get 503.",
    )
    database_pool_timeout: float = setting(
        "0.5",
        positive_float,
        "Seconds a request waits for a free MySQL connection of its worker before a 503.",
    )
    database_breaker_failures: int = setting(
        "3",
        positive_int,
        "Consecutive MySQL failures that open its circuit breaker.",
    )
    database_breaker_reset: float = setting(
        "1",
        positive_float,
        "Seconds the MySQL breaker stays open before one trial call.",
    )
    database_replica_urls: tuple[DatabaseURL, ...] = setting(
        "",
        database_urls,
        "Read replicas of ORDERS_DATABASE_URL, comma-separated, in the same URL form and TLS "
        "options: page and totals reads on a miss go to them (GTID-gated, see "
        "docs/guarantees.md); empty: every read goes to the primary.",
        secret=True,
    )
    database_replica_password: str = setting(
        "",
        str,
        "Overrides the password of every ORDERS_DATABASE_REPLICA_URLS entry (a Kubernetes Secret).",
        secret=True,
    )
    database_replica_wait: float = setting(
        "0.25",
        non_negative_float,
        "Seconds a fill waits for a replica to apply every invalidated transaction "
        "(MASTER_GTID_WAIT) before it reads the primary instead.",
    )
    database_wait_timeout: float = setting(
        "300",
        positive_float,
        "Seconds `orders-service migrate` (and other start-up steps) retry, with backoff, a "
        "MySQL that is not up yet before giving up.",
    )


@dataclass(frozen=True)
class CacheSettings:
    """Redis and the page cache: freshness, timeouts, the breaker, each worker's near cache."""

    redis_url: RedisURL = setting(
        "redis://127.0.0.1:6379/0",
        redis_url,
        "Redis holding the cache; the scheme says the topology: one server "
        "redis://[[user]:password@]host:6379/db (rediss:// for TLS), a primary watched by "
        "Sentinels redis+sentinel://[[user]:password@]host:26379[,host:port...]/master-name[/db], "
        "or a cluster redis+cluster://[[user]:password@]host:6379[,host:port...] "
        "(rediss+sentinel://, rediss+cluster:// for TLS).",
        secret=True,
    )
    redis_password: str = setting(
        "",
        str,
        "Overrides the password in ORDERS_REDIS_URL (for a Kubernetes Secret).",
        secret=True,
    )
    redis_sentinel_password: str = setting(
        "",
        str,
        "Password of the Sentinels themselves, where they want one (the URL's userinfo is the "
        "Redis servers'); empty: the Sentinels are asked without AUTH.",
        secret=True,
    )
    redis_cluster_group_pages: int = setting(
        "32",
        positive_int,
        "On a cluster (redis+cluster://), pages per group: a group's pages, leases, totals copy, "
        "checkpoint and fence share one hash slot. Smaller spreads memory and reads over more "
        "shards; larger makes a totals change (every insert or delete) touch fewer groups.",
    )
    cache_ttl: int = setting(
        "3600",
        positive_int,
        "Seconds a cached page is fresh. Invalidation usually removes it sooner.",
    )
    cache_max_stale: int = setting(
        "3600",
        non_negative_int,
        "Seconds past the TTL a cached page may still be served (marked stale) while MySQL is "
        "down.",
    )
    cache_prefix: str = setting(
        "orders",
        prefix,
        "Namespace of every Redis key, so deployments and test runs can share one Redis.",
    )
    cache_timeout: float = setting(
        "0.1",
        positive_float,
        "Timeout of every Redis call, in seconds. A slow Redis counts as a miss, never an error.",
    )
    cache_breaker_failures: int = setting(
        "3",
        positive_int,
        "Consecutive Redis failures that open the circuit breaker.",
    )
    cache_breaker_reset: float = setting(
        "5",
        positive_float,
        "Seconds the breaker stays open before one trial call.",
    )
    cache_lock_wait: float = setting(
        "0.5",
        positive_float,
        "Seconds a request waits for another request that is already filling the same page.",
    )
    near_cache: bool = setting(
        "true",
        boolean,
        "Keep recent pages in each worker's memory, kept exact by invalidations from Redis.",
    )
    near_cache_size: int = setting(
        "4096",
        positive_int,
        "Pages each worker keeps in its near cache (the oldest entries are dropped first).",
    )
    cache_max_lag: float = setting(
        "2",
        positive_float,
        "Seconds a cached page may be behind MySQL and still be served as a hit. Past it (the "
        "invalidator dead, paused or behind) the page is refilled, or served marked STALE if "
        "MySQL fails.",
    )
