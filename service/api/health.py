"""Probes: ``/healthz`` says the process is alive; ``/readyz`` says the pod can answer requests.

Readiness follows what the pod can still serve, not MySQL alone: the cache exists to serve stale
pages through a MySQL outage, and a readiness that failed with MySQL would empty the Service's
endpoints at exactly that moment and turn every cached page into a connection refused. So the pod
is ready when Redis answers (cached pages, STALE ones included, plus fast 503s for the rest) or
when MySQL answers with its schema in place (every page, uncached). It is unready only when neither
holds, or while draining after SIGTERM (``ORDERS_SHUTDOWN_DELAY`` seconds, so load balancers stop
sending traffic before the listener closes). The body always says what is degraded and why.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Blueprint, Response

from service import lifecycle
from service.cache import eviction
from service.cache.store import CacheUnavailable, RedisCache
from service.orders import catalog, repository
from service.orders.database import Database, DatabaseUnavailable
from service.orders.replicas import ReplicaReads
from service.wiring import api_services

bp = Blueprint("health", __name__)


def _json(document: dict[str, object], status: int = 200) -> Response:
    return Response(orjson.dumps(document), status=status, mimetype="application/json")


@bp.get("/healthz")
def healthz() -> Response:
    return _json({"status": "ok"})


def _mysql_check(database: Database) -> str:
    """``ok``, ``unavailable: ...`` or ``schema missing: ...``; never raises (a probe that 500s
    tells the kubelet nothing)."""
    try:
        missing = database.run("ping", repository.missing_tables)
    except DatabaseUnavailable as exc:
        return f"unavailable: {exc.reason}"
    except Exception as exc:  # noqa: BLE001 - any driver failure is "cannot answer", never a 500
        return f"unavailable: {type(exc).__name__}"
    if missing:
        return f"schema missing: no table {', '.join(missing)}; run `orders-service migrate`"
    return "ok"


def _schema_check(database: Database) -> str:
    """``ok`` or what the block counts and the binlog cannot follow (a dropped counting trigger,
    a cascading foreign key, a signed key): pages would be wrong even uncached. Reported as
    degraded, not unready: every pod reads the same MySQL, so unready would only empty the
    Service. Same question the invalidator asks (``catalog.schema_problems``)."""
    try:
        problems, sees = database.run("schema", _schema_state)
    except Exception as exc:  # noqa: BLE001 - the MySQL check already says why
        return f"unknown: {type(exc).__name__}"
    if problems:
        return "problems: " + "; ".join(problems)
    return "ok" if sees else "ok (counting triggers not checked: this MySQL user cannot see them)"


def _schema_state(cursor: repository.Cursor) -> tuple[list[str], bool]:
    return catalog.schema_problems(cursor), catalog.sees_triggers(cursor)


def _eviction_check(redis_cache: RedisCache) -> str:
    """The policy and whether it spares the index and the control keys (eviction.py)."""
    try:
        return eviction.describe(redis_cache.maxmemory_policy())
    except CacheUnavailable as exc:
        return f"unknown: {exc}"
    except Exception as exc:  # noqa: BLE001 - same rule as MySQL
        return f"unknown: {type(exc).__name__}"


def _redis_check(redis_cache: RedisCache) -> str:
    try:
        redis_cache.ping()
    except CacheUnavailable as exc:
        return f"unavailable: {exc}"
    except Exception as exc:  # noqa: BLE001 - same rule as MySQL
        return f"unavailable: {type(exc).__name__}"
    return "ok"


@bp.get("/readyz")
def readyz() -> Response:
    if lifecycle.draining.is_set():
        return _json({"status": "draining"}, 503)
    found = api_services()
    checks = {"mysql": _mysql_check(found.database), "redis": _redis_check(found.redis)}
    document: dict[str, object] = {"checks": checks}
    if checks["mysql"] == "ok":
        checks["schema"] = _schema_check(found.database)
    # Whether an invalidator keeps the cache current is reported, not judged: past the bound
    # entries are refilled, so serving stays correct either way (docs/guarantees.md).
    document["invalidation"] = _invalidation()
    if checks["redis"] == "ok":
        document["inspection"] = _inspection(found.redis)
        document["redis_eviction"] = _eviction_check(found.redis)
    if found.reads.replicas:
        document["replicas"] = found.reads.status()
    degraded = _degradations(document, checks) + _replica_degradations(found.reads)
    if degraded:
        document["degraded"] = degraded
    if checks["mysql"] != "ok" and checks["redis"] != "ok":
        return _json({"status": "unavailable", **document}, 503)
    return _json({"status": "degraded" if degraded else "ok", **document})


def _degradations(document: dict[str, Any], checks: dict[str, str]) -> list[str]:
    """What serves, but worse than it should, each in words an operator can act on."""
    degraded: list[str] = []
    eviction = document.get("redis_eviction")
    if eviction is not None and eviction.startswith("unsafe"):
        degraded.append(f"redis may evict the cache's index and control keys: {eviction}")
    if checks["mysql"].startswith("schema missing"):
        degraded.append("mysql schema missing: pages not in the cache answer 503")
    elif checks["mysql"] != "ok":
        degraded.append("mysql down: cached pages are served (STALE), others answer 503")
    if checks.get("schema", "").startswith("problems"):
        degraded.append(
            "schema: pages and totals may be wrong even uncached; run `orders-service "
            "migrate` (it restores what is missing and names what else to change)"
        )
    if checks["redis"] != "ok":
        degraded.append("redis down: every page is read from MySQL, uncached")
    if document["invalidation"]["status"] == "ahead":
        degraded.append(
            "invalidation checkpoint ahead of Redis' clock: not trusted, entries age by their "
            "read time (a restore, a failover to a host whose clock is behind, or forged)"
        )
    if document.get("inspection", {}).get("status") == "inconsistent":
        degraded.append(
            "the consistency inspector confirmed (and repaired) cached data older than the "
            "bound in the last 10 minutes: see its log and OrdersCacheInconsistent"
        )
    return degraded


def _replica_degradations(reads: ReplicaReads) -> list[str]:
    """A replica whose breaker is open: its share of the misses goes to the primary. Never a
    reason to be unready: the primary serves every read a replica would."""
    return [
        f"mysql replica {replica['replica']} failing: the primary serves its reads"
        for replica in reads.status()
        if replica["state"] == "open"
    ]


def _inspection(redis_cache: RedisCache) -> dict[str, object]:
    """Whether the inspector confirmed an inconsistency in the last 10 minutes (it records
    when in Redis; an inspector that never ran says nothing)."""
    try:
        found = redis_cache.last_inconsistency()
    except CacheUnavailable:
        return {"status": "unknown"}
    if found is None:
        return {"status": "ok"}
    ago = max(0.0, (api_services().freshness.clock.now_ms() - found) / 1000)
    return {"status": "inconsistent", "found_seconds_ago": round(ago, 1)}


def _invalidation() -> dict[str, object]:
    """Whether an invalidator keeps this worker's cache current: never a reason to be unready
    (past ``ORDERS_CACHE_MAX_LAG`` entries are refilled instead), but worth saying."""
    freshness = api_services().freshness
    age = freshness.checkpoint_age()
    max_lag = freshness.max_lag_ms / 1000
    ahead = freshness.ahead_seconds()
    if ahead > 0:
        return {
            "status": "ahead",
            "checkpoint_ahead_seconds": round(ahead, 3),
            "max_lag_seconds": max_lag,
        }
    if age is None:
        return {"status": "absent", "max_lag_seconds": max_lag}
    status = "ok" if age <= max_lag else "behind"
    return {"status": status, "checkpoint_age_seconds": round(age, 3), "max_lag_seconds": max_lag}
