"""The composition root: every long-lived object of an API process, built from ``Settings``.

This is the only module that reads ``Settings`` to build things; each constructor gets the values
it uses. ``create_app`` keeps the result as one typed object in ``app.extensions``, views reach it
through ``services()``, and ``close()`` releases everything in reverse order of creation.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from service.auth.jwks import JWKSCache
from service.auth.tokens import TokenVerifier
from service.breaker import CircuitBreaker
from service.cache.aside import PageCache
from service.cache.freshness import Freshness
from service.cache.keys import CacheKeys
from service.cache.near import InvalidationListener, NearCache
from service.cache.store import RedisCache, redis_client
from service.config import Settings
from service.observability import metrics
from service.orders import loaders
from service.orders.database import Database
from service.orders.representation import cache_control

EXTENSION = "orders"


@dataclass(frozen=True)
class Services:
    """What the views and hooks of one API process use."""

    settings: Settings
    database: Database
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
        if self.verifier is not None and isinstance(self.verifier.keys, JWKSCache):
            self.verifier.keys.start()  # the first JWKS fetch, in the background

    def close(self) -> None:
        """Stop the listener thread and close the pools (tests and graceful shutdown)."""
        if self.listener is not None:
            self.listener.stop()
        if self.verifier is not None and isinstance(self.verifier.keys, JWKSCache):
            self.verifier.keys.stop()
        self.database.close()
        self.redis.client.close()


def build_database(settings: Settings) -> Database:
    return Database(
        settings.database_url,
        timeout=settings.database_timeout,
        max_concurrency=settings.database_max_concurrency,
        pool_timeout=settings.database_pool_timeout,
        breaker=CircuitBreaker(
            "mysql",
            failures=settings.database_breaker_failures,
            reset_after=settings.database_breaker_reset,
            on_change=metrics.set_breaker_state,
        ),
    )


def build_redis_cache(
    settings: Settings, *, timeout: float | None = None, breaker_reset: float | None = None
) -> RedisCache:
    """The Redis side of the cache; the invalidator passes its own, longer ``timeout``."""
    return RedisCache(
        redis_client(settings.redis_url, timeout or settings.cache_timeout),
        CacheKeys(settings.cache_prefix, settings.page_size),
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


def build(settings: Settings) -> Services:
    """Everything an API process needs; nothing is started yet (see ``Services.start``)."""
    database = build_database(settings)
    redis_cache = build_redis_cache(settings)
    near = NearCache(settings.near_cache_size) if settings.near_cache else None
    freshness = Freshness(settings.cache_max_lag)
    # Always started, near cache or not: it measures Redis' clock and hears the checkpoint.
    listener = InvalidationListener(
        settings.redis_url, near, redis_cache.keys, freshness, config_fields(settings)
    )
    pages = PageCache(
        redis_cache,
        near,
        load_page=loaders.page_loader(database, settings.page_size),
        load_total=loaders.total_loader(database),
        page_size=settings.page_size,
        ttl=settings.cache_ttl,
        lock_wait=settings.cache_lock_wait,
        freshness=freshness,
    )
    return Services(
        settings=settings,
        database=database,
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


def install(app: Flask, built: Services) -> None:
    app.extensions[EXTENSION] = built


def services(app: Flask | None = None) -> Services:
    """The services of ``app`` (default: the current app)."""
    found: Services = (app or current_app).extensions[EXTENSION]
    return found
