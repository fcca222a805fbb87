"""Orders service: paginated orders from MySQL through an exact Redis cache.

``create_app`` wires settings, resources and blueprints; nothing happens at import time.
"""

from __future__ import annotations

from flask import Flask

from service.config import Settings

__version__ = "0.1.0"


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI application. Settings come from ``ORDERS_*`` unless given (tests)."""
    from service import observability
    from service.api import errors, health, openapi, orders
    from service.cache.aside import PageCache
    from service.cache.freshness import Freshness
    from service.cache.near import InvalidationListener, NearCache
    from service.cache.store import RedisCache, config_fields
    from service.orders import loaders
    from service.orders.database import Database

    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    database = Database(settings)
    redis_cache = RedisCache(settings)
    near = NearCache(settings.near_cache_size) if settings.near_cache else None
    freshness = Freshness(settings.cache_max_lag)
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
    app.extensions["orders.settings"] = settings
    app.extensions["orders.database"] = database
    app.extensions["orders.redis"] = redis_cache
    app.extensions["orders.pages"] = pages
    app.extensions["orders.freshness"] = freshness
    app.extensions["orders.cache_control"] = orders.cache_control(
        settings.http_max_age, settings.cache_max_stale
    )
    listener = InvalidationListener(
        settings, near, redis_cache.keys, freshness, config_fields(settings)
    )
    listener.start()
    app.extensions["orders.listener"] = listener

    errors.init_app(app)
    app.register_blueprint(orders.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(openapi.bp)
    observability.init_app(app, settings)
    return app


def close_app(app: Flask) -> None:
    """Stop the listener thread and close pools (tests and graceful shutdown)."""
    listener = app.extensions.get("orders.listener")
    if listener is not None:
        listener.stop()
    app.extensions["orders.database"].close()
    app.extensions["orders.redis"].client.close()
