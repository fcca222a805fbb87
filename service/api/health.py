"""Probes: ``/healthz`` says the process is alive; ``/readyz`` says it can serve pages.

Readiness needs MySQL only: the cache is optional, so a Redis outage reports ``degraded`` with
200. After SIGTERM readiness turns 503 for ``ORDERS_SHUTDOWN_DELAY`` seconds so that load balancers
stop sending traffic before the server stops accepting it.
"""

from __future__ import annotations

import orjson
from flask import Blueprint, Response

from service import lifecycle
from service.cache.store import CacheUnavailable
from service.orders import repository
from service.orders.database import DatabaseUnavailable
from service.services import services

bp = Blueprint("health", __name__)


def _json(document: dict[str, object], status: int = 200) -> Response:
    return Response(orjson.dumps(document), status=status, mimetype="application/json")


@bp.get("/healthz")
def healthz() -> Response:
    return _json({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    if lifecycle.draining.is_set():
        return _json({"status": "draining"}, 503)
    found = services()
    database, redis_cache = found.database, found.redis
    checks: dict[str, object] = {}
    try:
        database.run("ping", repository.ping)
        checks["mysql"] = "ok"
    except DatabaseUnavailable as exc:
        checks["mysql"] = f"unavailable: {exc.reason}"
    try:
        redis_cache.ping()
        checks["redis"] = "ok"
    except CacheUnavailable as exc:
        checks["redis"] = f"unavailable: {exc}"
    if checks["mysql"] != "ok":
        return _json({"status": "unavailable", "checks": checks}, 503)
    status = "ok" if checks["redis"] == "ok" else "degraded"
    return _json({"status": status, "checks": checks})
