"""Orders service: paginated orders from MySQL through an exact Redis cache.

``create_app`` wires settings, the API's services (``service.wiring``, the composition root) and
blueprints; nothing happens at import time.
"""

from __future__ import annotations

from flask import Flask

from service import config
from service.config import Settings

__version__ = "0.1.0"


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI application. Settings come from ``ORDERS_*`` unless given (tests)."""
    from service import observability, wiring
    from service.api import errors, health, hits, openapi, orders, pipeline

    settings = settings or config.load()
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    built = wiring.build_api(settings)
    wiring.install(app, built)
    built.start()

    errors.init_app(app)
    app.register_blueprint(orders.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(openapi.bp)
    observability.init_app(app, settings, breakers=built.breakers)
    # One pipeline in front of Flask owns request id, metrics, log line, ports and tokens, and
    # lets the fast path answer cache hits (service.api.pipeline).
    pipeline.install(
        app,
        hits=hits.CacheHits(built.pages, cache_control=built.cache_control),
        verifier=built.verifier,
        admin_port=settings.admin_port,
    )
    return app


def close_app(app: Flask) -> None:
    """Stop the listener thread and close pools (tests and graceful shutdown)."""
    from service import wiring

    wiring.api_services(app).close()
