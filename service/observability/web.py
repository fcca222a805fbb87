"""Per-request hooks (RED metrics, cache outcome, canonical log line, request id) and ``/metrics``.

The after-request hook is on every request's path, the cache-hit path included, so it does the
least it can: one ``perf_counter``, dict lookups of pre-bound metric children keyed by
(route template, method, status), one histogram observation, one counter increment when the view
reported a cache outcome, and one log line. Tracing work happens only when tracing is on.
"""

from __future__ import annotations

import random
import re
from time import perf_counter

import structlog
from flask import Flask, Response, g, request
from opentelemetry import trace
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.registry import CollectorRegistry

from service.cache.outcomes import CacheOutcome
from service.observability import metrics, multiproc, tracing
from service.observability.logging import request_logger

REQUEST_ID_HEADER = "X-Request-ID"
UNMATCHED = "unmatched"
# Routes whose canonical line is logged at debug level: probes and scrapes would drown the rest.
QUIET_ROUTES = frozenset(("/healthz", "/readyz", "/metrics"))
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


_OUTCOME = "orders_cache_outcome"


def note_cache_outcome(outcome: CacheOutcome) -> None:
    """The view's report of how the cache answered, for this request's metrics and log line."""
    setattr(g._get_current_object(), _OUTCOME, outcome)


def _new_request_id() -> str:
    """16 hex digits from the process's Mersenne Twister (reseeded after fork by Python): ids
    need to be unique, not unguessable, and urandom costs a syscall per request (~10 us here)."""
    return f"{random.getrandbits(64):016x}"


def _before_request() -> None:
    # Each proxy access (request, g) costs a context lookup: resolve them once per hook.
    req = request._get_current_object()  # type: ignore[attr-defined]
    ctx = g._get_current_object()
    ctx.obs_started = perf_counter()
    incoming = req.headers.get(REQUEST_ID_HEADER)
    request_id = incoming if incoming and _REQUEST_ID.fullmatch(incoming) else _new_request_id()
    ctx.request_id = request_id
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)


def _after_request(response: Response) -> Response:
    req = request._get_current_object()  # type: ignore[attr-defined]
    ctx = g._get_current_object()
    started = getattr(ctx, "obs_started", None)
    duration = perf_counter() - started if started is not None else 0.0
    rule = req.url_rule
    route = rule.rule if rule is not None else UNMATCHED
    method = req.method if req.method in metrics.KNOWN_METHODS else "other"
    status = response.status_code
    _http_child(route, method, status).observe(duration)

    outcome: CacheOutcome | None = getattr(ctx, _OUTCOME, None)
    if outcome is not None:
        _cache_child(route, outcome).inc()
    request_id = getattr(ctx, "request_id", None)
    if request_id is not None:
        response.headers[REQUEST_ID_HEADER] = request_id

    path = req.path
    fields = {
        "method": method,
        "route": route,
        "path": path if len(path) <= MAX_LOGGED_PATH else path[:MAX_LOGGED_PATH],
        "status": status,
        "duration_ms": round(duration * 1000.0, 3),
        "cache": outcome,
    }
    if len(path) > MAX_LOGGED_PATH:
        fields["path_truncated_from"] = len(path)
    if tracing.active():
        span = trace.get_current_span()
        context = span.get_span_context()
        if context.is_valid:
            fields["trace_id"] = format(context.trace_id, "032x")
            fields["span_id"] = format(context.span_id, "016x")
            if outcome is not None and span.is_recording():
                span.set_attribute(tracing.CACHE_OUTCOME_ATTRIBUTE, outcome)
    log = request_logger()
    if route in QUIET_ROUTES:
        log.debug("request", **fields)
    else:
        log.info("request", **fields)
    return response


def metrics_registry() -> CollectorRegistry:
    """All workers' metrics under gunicorn; this process's own otherwise."""
    path = multiproc.directory()
    return multiproc.registry(path) if path else REGISTRY


def init_app(app: Flask) -> None:
    """Register the request hooks, the ``/metrics`` endpoint and (when configured) tracing."""
    if tracing.enabled():
        # Registered first, so its span exists when our hooks run.
        tracing.instrument_app(app)
    app.before_request(_before_request)
    app.after_request(_after_request)
    registry = metrics_registry()

    def metrics_view() -> Response:
        return Response(
            generate_latest(registry),
            content_type=CONTENT_TYPE_LATEST,
            headers={"Cache-Control": "no-store"},
        )

    app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])
    metrics.publish_build_info("api")
