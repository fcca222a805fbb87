"""The composition root of all three processes: every long-lived object of the API, the
invalidator and the inspector, built from ``Settings``.

This is the only module that reads ``Settings`` to build things; each constructor gets the values
it uses. ``create_app`` keeps the API's as one typed ``ApiServices`` in ``app.extensions``, views
reach it through ``api_services()``, and ``close()`` releases everything in reverse order of
creation. ``build_invalidator`` and ``build_inspector`` build the other two processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, current_app

from service.auth.jwks import JWKSCache
from service.auth.tokens import TokenVerifier
from service.breaker import BreakerState, CircuitBreaker
from service.cache.aside import PageCache
from service.cache.cluster import ClusterCache
from service.cache.freshness import Freshness
from service.cache.hot import HotPages
from service.cache.keys import CacheKeys
from service.cache.near import InvalidationListener, NearCache
from service.cache.store import RedisCache, redis_client
from service.config import DatabaseURL, Settings
from service.inspection.inspector import Inspector
from service.invalidation.invalidator import Invalidator
from service.invalidation.options import InvalidatorOptions
from service.observability import metrics, replica_metrics
from service.orders import loaders
from service.orders.database import Connection, Database
from service.orders.replicas import Replica, ReplicaMonitor, ReplicaReads
from service.orders.representation import cache_control

EXTENSION = "orders"


@dataclass(frozen=True)
class ApiServices:
    """What the views and hooks of one API process use."""

    database: Database
    reads: ReplicaReads  # a miss's reads: a replica past the GTID gate, else ``database``
    monitor: ReplicaMonitor
    redis: RedisCache
    near: NearCache | None
    listener: InvalidationListener | None
    pages: PageCache
    freshness: Freshness
    cache_control: str
    verifier: TokenVerifier | None  # None: authentication is off

    @property
    def breakers(self) -> tuple[CircuitBreaker, ...]:
        return (self.database.breaker, self.redis.breaker)

    def start(self) -> None:
        if self.listener is not None:
            self.listener.start()
        self.monitor.start()
        if self.verifier is not None and isinstance(self.verifier.keys, JWKSCache):
            self.verifier.keys.start()  # the first JWKS fetch, in the background

    def close(self) -> None:
        """Stop the listener thread and close the pools (tests and graceful shutdown)."""
        if self.listener is not None:
            self.listener.stop()
        if self.verifier is not None and isinstance(self.verifier.keys, JWKSCache):
            self.verifier.keys.stop()
        self.monitor.stop()
        self.reads.close()
        self.database.close()
        self.redis.client.close()


def build_database(
    settings: Settings,
    url: DatabaseURL | None = None,
    breaker: str = "mysql",
    on_change: Callable[[str, BreakerState], None] = metrics.set_breaker_state,
) -> Database:
    """The primary's request-path pool, or (``url``) a replica's with the same limits."""
    return Database(
        url or settings.database_url,
        timeout=settings.database_timeout,
        max_concurrency=settings.database_max_concurrency,
        pool_timeout=settings.database_pool_timeout,
        breaker=CircuitBreaker(
            breaker,
            failures=settings.database_breaker_failures,
            reset_after=settings.database_breaker_reset,
            on_change=on_change,
        ),
    )


def build_reads(settings: Settings, primary: Database) -> ReplicaReads:
    """The replicas of ``ORDERS_DATABASE_REPLICA_URLS`` (each its own pool and breaker, named
    ``host:port``) in front of ``primary``."""
    replicas = []
    for url in settings.database_replica_urls:
        name = f"{url.host}:{url.port}"
        database = build_database(settings, url, f"mysql-replica:{name}", _replica_breaker(name))
        replicas.append(Replica(name, database))
    return ReplicaReads(primary, replicas, wait=settings.database_replica_wait)


def _replica_breaker(name: str) -> Callable[[str, BreakerState], None]:
    """A replica's breaker reports to the breaker gauge and to ``orders_db_replica_up``."""

    def changed(dependency: str, state: BreakerState) -> None:
        metrics.set_breaker_state(dependency, state)
        replica_metrics.set_up(name, state is not BreakerState.OPEN)

    return changed


def build_redis_cache(
    settings: Settings, *, timeout: float | None = None, breaker_reset: float | None = None
) -> RedisCache:
    """The Redis side of the cache; the invalidator passes its own, longer ``timeout``."""
    cluster = settings.redis_url.topology == "cluster"
    cache = ClusterCache if cluster else RedisCache
    return cache(
        redis_client(settings.redis_url, timeout or settings.cache_timeout),
        CacheKeys(
            settings.cache_prefix,
            settings.page_size,
            settings.redis_cluster_group_pages if cluster else None,
        ),
        CircuitBreaker(
            "redis",
            failures=settings.cache_breaker_failures,
            reset_after=breaker_reset or settings.cache_breaker_reset,
            on_change=metrics.set_breaker_state,
        ),
        hard_ttl=settings.cache_ttl + settings.cache_max_stale,
    )


def build_verifier(settings: Settings) -> TokenVerifier:
    """The bearer-token verifier and its key cache, from the ORDERS_AUTH_* settings."""
    keys = JWKSCache(
        settings.auth_jwks_url,
        cache_time=settings.auth_jwks_cache_time,
        refresh_interval=settings.auth_jwks_refresh_interval,
        timeout=settings.auth_jwks_timeout,
    )
    return TokenVerifier(
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        keys=keys,
        algorithms=settings.auth_algorithms,
        required_scope=settings.auth_required_scope,
        leeway=settings.auth_leeway,
    )


def build_api(settings: Settings) -> ApiServices:
    """Everything an API process needs; nothing is started yet (see ``ApiServices.start``)."""
    database = build_database(settings)
    reads = build_reads(settings, database)
    redis_cache = build_redis_cache(settings)
    near = NearCache(settings.near_cache_size) if settings.near_cache else None
    freshness = Freshness(settings.cache_max_lag)
    hot = HotPages()
    # Always started, near cache or not: it measures Redis' clock and hears the checkpoint.
    listener = InvalidationListener(
        settings.redis_url, near, redis_cache.keys, freshness, config_fields(settings), hot=hot
    )
    pages = PageCache(
        redis_cache,
        near,
        load_page=loaders.page_loader(reads, settings.page_size),
        load_total=loaders.total_loader(reads),
        page_size=settings.page_size,
        ttl=settings.cache_ttl,
        lock_wait=settings.cache_lock_wait,
        freshness=freshness,
        hot=hot,
        replica_budget=(
            settings.cache_max_lag - settings.database_replica_wait if reads.replicas else None
        ),
    )
    return ApiServices(
        database=database,
        reads=reads,
        monitor=ReplicaMonitor(reads),
        redis=redis_cache,
        near=near,
        listener=listener,
        pages=pages,
        freshness=freshness,
        cache_control=cache_control(settings.http_max_age, settings.cache_max_stale),
        verifier=build_verifier(settings) if settings.auth_enabled else None,
    )


def config_fields(settings: Settings) -> dict[str, str | int | float]:
    """What the API publishes under ``keys.config``: every setting the invalidator must share."""
    return {
        "prefix": settings.cache_prefix,
        "page_size": settings.page_size,
        "ttl": settings.cache_ttl,
        "max_stale": settings.cache_max_stale,
        "max_lag": settings.cache_max_lag,
    }


def install(app: Flask, built: ApiServices) -> None:
    app.extensions[EXTENSION] = built


def api_services(app: Flask | None = None) -> ApiServices:
    """The services of ``app`` (default: the current app)."""
    found: ApiServices = (app or current_app).extensions[EXTENSION]
    return found


def build_invalidator(settings: Settings) -> Invalidator:
    """The invalidator's parts from the settings."""
    # Off the request path: a longer Redis timeout and a quick breaker retry suit it better.
    cache = build_redis_cache(settings, timeout=max(settings.cache_timeout, 2.0), breaker_reset=0.2)
    options = InvalidatorOptions(
        page_size=settings.page_size,
        server_id=settings.invalidator_server_id,
        cache_ttl=settings.cache_ttl,
        heartbeat_seconds=settings.invalidator_heartbeat,
        recheck_delay=settings.invalidator_recheck_delay,
        stall_after=settings.invalidator_stall_after,
        chunk_rows=settings.invalidator_chunk_rows,
        lease_ttl=settings.invalidator_lease_ttl,
        first_contact_timeout=settings.database_wait_timeout,
        verify_blocks=settings.invalidator_verify_blocks,
        verify_interval=settings.invalidator_verify_interval,
        repair_settle=settings.invalidator_repair_settle,
    )
    return Invalidator(
        settings.database_url,
        cache,
        Connection(settings.database_url, timeout=5),
        Connection(settings.database_url, timeout=2),
        options,
    )


def run_invalidator(settings: Settings) -> None:
    """``orders-service invalidate``: logging, the metrics endpoint, then follow until stopped."""
    from service.invalidation import invalidator as process
    from service.observability import logging as service_logging
    from service.observability.invalidator_server import start_invalidator_metrics_server

    service_logging.configure(settings)
    invalidator = build_invalidator(settings)
    start_invalidator_metrics_server(
        settings.host, settings.invalidator_metrics_port, invalidator.healthy
    )
    metrics.track_invalidation_lag(invalidator.checkpoint_age)
    process.serve(invalidator)


def build_inspector(settings: Settings, database: Database) -> Inspector:
    """The inspector, reading pages through ``database`` (the caller closes it)."""
    return Inspector(
        build_redis_cache(settings),
        load_page=loaders.page_loader(database, settings.page_size),
        load_total=loaders.total_loader(database),
        pages=settings.inspector_pages,
        max_lag=settings.cache_max_lag,
        max_queries=settings.inspector_max_queries,
        interval=settings.inspector_interval,
        load_pages=loaders.pages_loader(database, settings.page_size),
    )


def run_inspector(settings: Settings) -> None:
    """``orders-service inspect``: logging, then rounds and /metrics until stopped."""
    from service.inspection import process
    from service.observability import logging as service_logging

    service_logging.configure(settings)
    database = build_database(settings)
    process.run_inspector(
        build_inspector(settings, database),
        close=database.close,
        host=settings.inspector_host,
        port=settings.inspector_metrics_port,
        interval=settings.inspector_interval,
        pages=settings.inspector_pages,
    )
