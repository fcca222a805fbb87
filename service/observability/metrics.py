"""Prometheus metrics of the service and the invalidator, and the cheap calls that record them.

Every metric is declared here once, so docs/operations.md's metric table, the dashboard and the
alert rules have one place to agree with. Recording functions keep a per-process dict of pre-bound
label children: the request path pays one dict lookup and the client's own mmap write, never a
label-dict construction or an extra lock. Gauges declare a multiprocess mode because gunicorn runs
several workers, each writing its own file (see ``multiproc``).
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from enum import StrEnum
from importlib import metadata

from prometheus_client import Counter, Gauge, Histogram

from service.breaker import BreakerState

# Latency buckets: a near-cache or Redis hit answers in well under a millisecond, a MySQL miss in
# a few; the upper buckets catch timeouts (ORDERS_DATABASE_TIMEOUT, 0.4 s by default).
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
HTTP_BUCKETS = (*DB_BUCKETS, 5.0, 10.0)
REDIS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


class DbError(StrEnum):
    """Kinds of request-path MySQL failure (``orders_db_errors_total{kind}``)."""

    CONNECT = "connect"  # no connection could be opened
    QUERY = "query"  # a query failed or timed out
    BUSY = "busy"  # every pooled connection of the worker was in use


BREAKER_STATES = tuple(BreakerState)
# Methods outside this set are counted as "other", so a client cannot create label values at will.
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))

HTTP_REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request, by route template (never the raw path), method and status.",
    ("route", "method", "status"),
    buckets=HTTP_BUCKETS,
)
CACHE_REQUESTS = Counter(
    "orders_cache_requests",
    "Requests answered through the cache, by route template and outcome "
    "(hit, miss, stale, error, bypass).",
    ("route", "outcome"),
)
NEAR_CACHE_RESETS = Counter(
    "orders_near_cache_resets",
    "Times a worker emptied its near cache, by reason (disconnect: its invalidation feed broke).",
    ("reason",),
)
NEAR_CACHE_ENTRIES = Gauge(
    "orders_near_cache_entries",
    "Pages held in the near caches of the live worker processes (summed over workers).",
    multiprocess_mode="livesum",
)
DB_QUERY_SECONDS = Histogram(
    "orders_db_query_duration_seconds",
    "Time of one MySQL query on the request path, by query name.",
    ("query",),
    buckets=DB_BUCKETS,
)
DB_ERRORS = Counter(
    "orders_db_errors",
    "MySQL calls that failed, by kind (connect, query, busy: no pooled connection was free).",
    ("kind",),
)
REDIS_CALL_SECONDS = Histogram(
    "orders_redis_call_duration_seconds",
    "Time of one Redis call (a command, script or pipeline), by command name.",
    ("command",),
    buckets=REDIS_BUCKETS,
)
REDIS_ERRORS = Counter(
    "orders_redis_errors",
    "Redis calls that failed or timed out, by command name.",
    ("command",),
)
BREAKER_STATE = Gauge(
    "orders_circuit_breaker_state",
    "Live worker processes whose circuit breaker for a dependency is in each state.",
    ("dependency", "state"),
    multiprocess_mode="livesum",
)
INVALIDATIONS = Counter(
    "orders_invalidations",
    "Cache invalidations the binlog follower applied, by kind.",
    ("kind",),
)
HTTP_REFUSED = Counter(
    "orders_http_refused",
    "Requests the gunicorn worker answered before the app, by reason: timeout (408), "
    "body_too_large (413), headers_too_large (431), client_cap (503).",
    ("reason",),
)
HTTP_REFUSALS = ("timeout", "body_too_large", "headers_too_large", "client_cap")
BUILD_INFO = Gauge(
    "orders_build_info",
    "Always 1; the labels say which build and runtime is serving.",
    ("version", "python_version", "component"),
    multiprocess_mode="livemax",
)

# Pre-bound children, keyed by label values. Dict reads and writes are atomic under the GIL; two
# threads racing on a first sight both get the same child from the client's own cache.
_db_query: dict[str, Histogram] = {}
_db_errors: dict[str, Counter] = {}
_redis_calls: dict[str, tuple[Histogram, Counter]] = {}
_breakers: dict[str, dict[str, Gauge]] = {}
_invalidations: dict[str, Counter] = {}


def observe_db_query(query: str, seconds: float) -> None:
    """Record one request-path MySQL query; ``query`` is a fixed name from the repository."""
    child = _db_query.get(query)
    if child is None:
        child = _db_query[query] = DB_QUERY_SECONDS.labels(query)
    child.observe(seconds)


def count_db_error(kind: str) -> None:
    """Count one failed MySQL call; ``kind`` is a small fixed vocabulary, never an error message."""
    child = _db_errors.get(kind)
    if child is None:
        child = _db_errors[kind] = DB_ERRORS.labels(kind)
    child.inc()


def prepare_db_error_kinds(*kinds: str) -> None:
    """Publish the error counters at 0 before the first error, so rate() sees the first one."""
    for kind in kinds:
        if kind not in _db_errors:
            _db_errors[kind] = DB_ERRORS.labels(kind)


def observe_redis_call(command: str, seconds: float, ok: bool) -> None:
    """Record one Redis call; a failure also counts in ``orders_redis_errors_total``."""
    children = _redis_calls.get(command)
    if children is None:
        # The error child is created (at 0) with the first call, so error rates start at 0, not
        # at "no data".
        children = _redis_calls[command] = (
            REDIS_CALL_SECONDS.labels(command),
            REDIS_ERRORS.labels(command),
        )
    children[0].observe(seconds)
    if not ok:
        children[1].inc()


def set_breaker_state(dependency: str, state: str) -> None:
    """Publish this worker's breaker state: 1 for ``state``, 0 for the others (rare: on change)."""
    children = _breakers.get(dependency)
    if children is None:
        children = _breakers[dependency] = {
            name: BREAKER_STATE.labels(dependency, name) for name in BREAKER_STATES
        }
    if state not in children:
        raise ValueError(f"unknown breaker state {state!r}; expected one of {BREAKER_STATES}")
    for name, child in children.items():
        child.set(1 if name == state else 0)


def count_http_refused(reason: str) -> None:
    """Count one request the worker's event loop refused; ``reason`` is one of HTTP_REFUSALS."""
    HTTP_REFUSED.labels(reason).inc()


def count_near_cache_reset(reason: str) -> None:
    """Count one emptying of this worker's near cache (rare: the feed broke)."""
    NEAR_CACHE_RESETS.labels(reason).inc()


def set_near_cache_entries(entries: int) -> None:
    """Publish how many pages this worker's near cache holds (summed over live workers)."""
    NEAR_CACHE_ENTRIES.set(entries)


def count_invalidations(kind: str, n: int = 1) -> None:
    """Count invalidations the binlog follower applied (invalidator process)."""
    child = _invalidations.get(kind)
    if child is None:
        child = _invalidations[kind] = INVALIDATIONS.labels(kind)
    child.inc(n)


class _InvalidationLag:
    """The lag gauge, registered on first use: only the invalidator has one to report, and an
    unlabelled gauge created at import would make every API worker export a meaningless 0."""

    gauge: Gauge | None = None

    @classmethod
    def get(cls) -> Gauge:
        if cls.gauge is None:
            cls.gauge = Gauge(
                "orders_invalidation_lag_seconds",
                "Seconds from a change's binlog event time to its invalidation being applied.",
                multiprocess_mode="livemostrecent",
            )
        return cls.gauge


def track_invalidation_lag(age: Callable[[], float]) -> None:
    """Compute the lag at scrape time from ``age()`` (the invalidator's checkpoint age), so it
    keeps growing while the process is stuck (Redis paused, MySQL gone) instead of freezing."""
    _InvalidationLag.get().set_function(age)


# The invalidator's own health signals (invalidator process only; registered on first use, like
# the lag gauge, so API workers never export them).
_INVALIDATOR_EVENTS = {
    "unreadable_event": "binlog events or rows the invalidator could not read (each a reset)",
    "reset": "transactions that invalidated every page (DDL, TRUNCATE, unreadable data)",
    "fresh_start": "starts that cleared the cache: no usable stored position",
    "fenced_step": "invalidation steps refused because a newer invalidator holds the lease",
    "repair_denied": "schema repairs or recounts its MySQL user may not make (run migrate)",
    "heartbeat_error": "heartbeat writes to MySQL that failed",
    "count_drift_repaired": "block counts found different from their rows and recounted",
    "repair_waiting": "recounts put off while orders is missing (only migrate creates it)",
}
_invalidator_events: dict[str, Counter] = {}
_invalidator_gauges: dict[str, Gauge] = {}
_INVALIDATOR_GAUGES = {
    "leader": "1 while this invalidator holds the lease and applies invalidations.",
    "binlog_row_format": "1 when the server logs rows (binlog_format=ROW), 0 otherwise.",
    "gtid_positions": "1 when positions carry the GTID state and the invalidator resumes by "
    "GTID (a promoted replica is followed on), 0 when GTIDs are off (MySQL gtid_mode != ON): "
    "a promotion then clears the cache.",
    "schema_problems": "Missing tables or counting triggers, cascading foreign keys and "
    "unexpected key columns found (0 when none; /readyz names them).",
}


def _invalidator_event(kind: str) -> Counter:
    if kind not in _INVALIDATOR_EVENTS:
        raise ValueError(f"unknown invalidator event {kind!r}")
    child = _invalidator_events.get(kind)
    if child is None:
        if not _invalidator_events:
            _InvalidatorEvents.counter = Counter(
                "orders_invalidator_events",
                "Notable invalidator events, by kind: "
                + "; ".join(f"{k}: {v}" for k, v in _INVALIDATOR_EVENTS.items()),
                ("kind",),
            )
        assert _InvalidatorEvents.counter is not None
        child = _invalidator_events[kind] = _InvalidatorEvents.counter.labels(kind)
    return child


class _InvalidatorEvents:
    counter: Counter | None = None


def count_invalidator_event(kind: str) -> None:
    """Count one ``orders_invalidator_events_total{kind}`` (kinds: ``_INVALIDATOR_EVENTS``)."""
    _invalidator_event(kind).inc()


def set_invalidator_gauge(name: str, value: float) -> None:
    """``orders_invalidator_leader`` and ``orders_invalidator_binlog_row_format`` (see
    ``_INVALIDATOR_GAUGES``)."""
    gauge = _invalidator_gauges.get(name)
    if gauge is None:
        gauge = _invalidator_gauges[name] = Gauge(
            f"orders_invalidator_{name}", _INVALIDATOR_GAUGES[name]
        )
    gauge.set(value)


class _PrimaryChanges:
    counter: Counter | None = None


def count_primary_change(times: int = 1) -> None:
    """``orders_invalidator_primary_changes_total``: MySQL promotions followed by GTID (a new
    server at the database address that holds the history, resumed without clearing)."""
    if _PrimaryChanges.counter is None:
        _PrimaryChanges.counter = Counter(
            "orders_invalidator_primary_changes",
            "MySQL primaries changed under the invalidator and followed by GTID (promotions).",
        )
    _PrimaryChanges.counter.inc(times)


# What the binlog follower reports (service.invalidation.invalidator): single pages, a shift
# of every page from one on (insert/delete), and the totals.
INVALIDATION_KINDS = ("page", "shift", "totals")


def prepare_invalidator() -> None:
    """Publish the invalidator's series at 0 before its first event, so rate() sees the first."""
    _InvalidationLag.get()
    count_primary_change(0)
    for event_kind in _INVALIDATOR_EVENTS:
        _invalidator_event(event_kind)
    for kind in INVALIDATION_KINDS:
        if kind not in _invalidations:
            _invalidations[kind] = INVALIDATIONS.labels(kind)


def service_version() -> str:
    """The installed distribution's version, or "unknown" when running from a bare tree."""
    try:
        return metadata.version("orders-service")
    except metadata.PackageNotFoundError:
        return "unknown"


def publish_build_info(component: str) -> None:
    """Set ``orders_build_info`` for this process (component: api or invalidator)."""
    BUILD_INFO.labels(service_version(), platform.python_version(), component).set(1)


class _Checkpoint:
    """The API's view of the invalidator's checkpoint, registered on first use (by the API's
    listener thread), so the invalidator's own /metrics does not carry a meaningless copy.

    ``livemax`` for the age: the series answers "is any live worker without recent proof that
    invalidation is progressing?", and the worst worker is the one that refills (or serves stale)
    most; ``min`` would let one healthy worker hide another whose feed is broken. ``livemin`` for
    "seen" for the same reason: 0 if any live worker has never seen a checkpoint. Both drop a dead
    worker's value (``live``), so a recycled worker's last reading does not linger.
    """

    age: Gauge | None = None
    seen: Gauge | None = None
    ahead: Gauge | None = None

    @classmethod
    def get(cls) -> tuple[Gauge, Gauge, Gauge]:
        if cls.age is None or cls.seen is None or cls.ahead is None:
            cls.age = Gauge(
                "orders_cache_checkpoint_age_seconds",
                "Seconds since the newest invalidation checkpoint this worker has seen (Redis "
                "clock; worst live worker). With none seen yet: seconds since it started looking.",
                multiprocess_mode="livemax",
            )
            cls.seen = Gauge(
                "orders_cache_checkpoint_seen",
                "1 if every live worker has seen an invalidation checkpoint under its namespace "
                "(an invalidator follows its page size and prefix), else 0.",
                multiprocess_mode="livemin",
            )
            cls.ahead = Gauge(
                "orders_cache_checkpoint_ahead_seconds",
                "Seconds the checkpoint in Redis is ahead of Redis' own clock (worst live worker; "
                "0 normally). Above 0 it is not trusted: a restore, a failover to a host whose "
                "clock is behind, a clock step or a forged value.",
                multiprocess_mode="livemax",
            )
        return cls.age, cls.seen, cls.ahead


def set_checkpoint_age(age: float | None, waited: float, ahead: float = 0.0) -> None:
    """Publish this worker's checkpoint age (``None``: none seen after ``waited`` seconds) and
    how far ahead of Redis' clock the checkpoint it read is."""
    age_gauge, seen_gauge, ahead_gauge = _Checkpoint.get()
    age_gauge.set(waited if age is None else age)
    seen_gauge.set(0 if age is None else 1)
    ahead_gauge.set(ahead)
