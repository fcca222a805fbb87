"""What every request leaves behind (RED metrics, cache counter, canonical log line, request id),
recorded by the request pipeline (service.api.pipeline), and ``/metrics``.

``record_request`` is on every request's path, the cache-hit path included, so it does the least
it can: dict lookups of pre-bound metric children keyed by (route template, method, status), one
histogram observation, one counter increment when the cache answered, and one log line. Tracing
work happens only when tracing is on.
"""

from __future__ import annotations

import random
import re

from flask import Flask, Response
from opentelemetry import trace
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.registry import CollectorRegistry

from service.cache_outcomes import CacheOutcome
from service.observability import metrics, multiproc, tracing
from service.observability.logging import log_request

REQUEST_ID_HEADER = "X-Request-ID"
# Routes whose canonical line is logged at debug level: probes and scrapes would drown the rest.
QUIET_ROUTES = frozenset(("/healthz", "/readyz", "/metrics", "/status"))
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
# A client chooses the path (up to gunicorn's 4094-byte request line): the log line keeps the start
# and says it was cut, so one request cannot write kilobytes of log.
MAX_LOGGED_PATH = 256

_http_children: dict[tuple[str, str, int], Histogram] = {}
_cache_children: dict[tuple[str, str], Counter] = {}


def _http_child(route: str, method: str, status: int) -> Histogram:
    key = (route, method, status)
    child = _http_children.get(key)
    if child is None:
        child = _http_children[key] = metrics.HTTP_REQUEST_SECONDS.labels(
            route, method, str(status)
        )
    return child


def _cache_child(route: str, outcome: str) -> Counter:
    child = _cache_children.get((route, outcome))
    if child is None:
        # First outcome seen on this route: publish every outcome at 0, so the first miss or
        # error is a visible increase for rate(), not the birth of a series.
        for name in CacheOutcome:
            _cache_children.setdefault((route, name), metrics.CACHE_REQUESTS.labels(route, name))
        child = _cache_children.get((route, outcome))
        if child is None:
            child = _cache_children[(route, outcome)] = metrics.CACHE_REQUESTS.labels(
                route, outcome
            )
    return child


def _new_request_id() -> str:
    """16 hex digits from the process's Mersenne Twister (reseeded after fork by Python): ids
    need to be unique, not unguessable, and urandom costs a syscall per request (~10 us here)."""
    return f"{random.getrandbits(64):016x}"


def request_id_for(incoming: str | None) -> str:
    """The client's ``X-Request-ID`` if it is a sane token, else a new id."""
    return incoming if incoming and _REQUEST_ID.fullmatch(incoming) else _new_request_id()


def record_request(  # noqa: PLR0917 - one call per request: positional is the cheaper call
    route: str,
    method: str,
    status: int,
    duration: float,
    outcome: CacheOutcome | None,
    path: str,
    request_id: str | None,
    extra: dict[str, object] | None = None,
) -> None:
    """The RED histogram, the cache counter and the canonical log line of one answered request:
    what every request leaves behind, whichever way it was answered (Flask or the fast path)."""
    _http_child(route, method, status).observe(duration)
    if outcome is not None:
        _cache_child(route, outcome).inc()
    fields: dict[str, object] = {
        "method": method,
        "route": route,
        "path": path if len(path) <= MAX_LOGGED_PATH else path[:MAX_LOGGED_PATH],
        "status": status,
        "duration_ms": round(duration * 1000.0, 3),
        "cache": outcome,
    }
    if len(path) > MAX_LOGGED_PATH:
        fields["path_truncated_from"] = len(path)
    if extra:
        fields.update(extra)
    log_request(fields, request_id, quiet=route in QUIET_ROUTES)


def trace_fields(outcome: CacheOutcome | None) -> dict[str, object] | None:
    """Inside a traced request: its trace and span ids for the log line, and the cache outcome
    on its span. None when tracing is off (the common case: one cheap check)."""
    if not tracing.active():
        return None
    span = trace.get_current_span()
    context = span.get_span_context()
    if not context.is_valid:
        return None
    if outcome is not None and span.is_recording():
        span.set_attribute(tracing.CACHE_OUTCOME_ATTRIBUTE, outcome)
    return {
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
    }


def metrics_registry() -> CollectorRegistry:
    """All workers' metrics under gunicorn; this process's own otherwise."""
    path = multiproc.directory()
    return multiproc.registry(path) if path else REGISTRY


def init_app(app: Flask) -> CollectorRegistry:
    """Register the ``/metrics`` endpoint and (when configured) tracing; returns the registry
    ``/metrics`` reads (the status page reads the same)."""
    if tracing.enabled():
        # Registered first, so its span exists when our hooks run.
        tracing.instrument_app(app)
    registry = metrics_registry()

    def metrics_view() -> Response:
        return Response(
            generate_latest(registry),
            content_type=CONTENT_TYPE_LATEST,
            headers={"Cache-Control": "no-store"},
        )

    app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])
    metrics.publish_build_info("api")
    return registry
