"""The peer: ``GET /orders/<page>`` written the way Flask-Caching's documentation shows.

A view decorated with ``@cache.cached`` on the RedisCache backend, reading the same ``orders`` table
with SQLAlchemy (LIMIT/OFFSET and COUNT(*), as most tutorials do) and answering with ``jsonify``.
This is what a user would otherwise write; the service has to beat it by a clear margin.
Configured by BENCH_PEER_DATABASE_URL, BENCH_PEER_REDIS_URL and BENCH_PEER_PREFIX.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, Response, abort, jsonify
from flask_caching import Cache
from sqlalchemy import create_engine, text

PER_PAGE = 10


def _iso(value: Any) -> str:
    return value.isoformat(timespec="microseconds") + "Z"


def create_app() -> Flask:
    """Application factory, the Flask-Caching quick-start shape."""
    app = Flask(__name__)
    app.config.from_mapping(
        CACHE_TYPE="RedisCache",
        CACHE_REDIS_URL=os.environ.get("BENCH_PEER_REDIS_URL", "redis://127.0.0.1:6379/0"),
        CACHE_KEY_PREFIX=os.environ.get("BENCH_PEER_PREFIX", "bench-peer:"),
        CACHE_DEFAULT_TIMEOUT=3600,
    )
    cache = Cache(app)
    engine = create_engine(
        os.environ["BENCH_PEER_DATABASE_URL"], pool_size=4, pool_pre_ping=True, pool_recycle=3600
    )

    # response_hit_indication adds a `hit_cache` header on hits: the harness needs it to see the
    # hit rate during the cold start; it costs one header assignment.
    @app.get("/orders/<int:page>")
    @cache.cached(timeout=3600, response_hit_indication=True)
    def orders_page(page: int) -> Response:
        if page < 1:
            abort(404)
        with engine.connect() as conn:
            total = conn.execute(text("SELECT COUNT(*) FROM orders")).scalar_one()
            rows = conn.execute(
                text(
                    "SELECT id, customer_id, customer_name, customer_email, status, amount,"
                    " currency, item_count, created_at, updated_at FROM orders"
                    " ORDER BY id LIMIT :limit OFFSET :offset"
                ),
                {"limit": PER_PAGE, "offset": (page - 1) * PER_PAGE},
            ).all()
        last = max(1, -(-total // PER_PAGE))
        return jsonify(
            page=page,
            per_page=PER_PAGE,
            total_orders=total,
            total_pages=last,
            links={
                "self": f"/orders/{page}",
                "first": "/orders/1",
                "prev": f"/orders/{page - 1}" if page > 1 else None,
                "next": f"/orders/{page + 1}" if page < last else None,
                "last": f"/orders/{last}",
            },
            orders=[
                {
                    "id": r.id,
                    "customer": {
                        "id": r.customer_id,
                        "name": r.customer_name,
                        "email": r.customer_email,
                    },
                    "status": r.status,
                    "total": {"amount": str(r.amount), "currency": r.currency},
                    "item_count": r.item_count,
                    "created_at": _iso(r.created_at),
                    "updated_at": _iso(r.updated_at),
                }
                for r in rows
            ],
        )

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    return app


app = create_app()
