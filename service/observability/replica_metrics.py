"""The read replicas' metrics: health and lag per replica, where fills were read, GTID waits.

Declared once here (the dashboard and the alerts name them); recorded by
``service.orders.replicas``. Gauges are per replica and per worker process: ``up`` keeps the
lowest worker's view (one worker that cannot reach a replica shows it down), lag the highest.
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import Counter, Gauge, Histogram

FillSource = Literal["replica", "primary"]
FILL_SOURCES: tuple[FillSource, ...] = ("replica", "primary")
# A wait that reaches its state answers in a round trip; the upper buckets are the
# ORDERS_DATABASE_REPLICA_WAIT bound (0.25 s by default) and its timeouts.
WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

REPLICA_UP = Gauge(
    "orders_db_replica_up",
    "1 while a read replica answers (its circuit breaker closed), 0 while it fails; the "
    "primary serves its reads meanwhile.",
    ("replica",),
    multiprocess_mode="livemin",
)
REPLICA_LAG = Gauge(
    "orders_db_replica_lag_seconds",
    "How far a read replica is behind the primary: the primary's newest invalidator heartbeat "
    "minus the replica's (0 when both hold the same one).",
    ("replica",),
    multiprocess_mode="livemax",
)
CACHE_FILLS = Counter(
    "orders_cache_fills",
    "Cache misses loaded from MySQL, by where they were read (replica: after its GTID wait; "
    "primary: no replica, none had applied the invalidated writes in time, or it failed).",
    ("source",),
)
GTID_WAIT_SECONDS = Histogram(
    "orders_db_gtid_wait_seconds",
    "Time a fill waited for a replica to apply the invalidator's GTID state.",
    buckets=WAIT_BUCKETS,
)
GTID_WAIT_TIMEOUTS = Counter(
    "orders_db_gtid_wait_timeouts",
    "GTID waits that ended before the replica applied the state (the fill read the primary).",
    ("replica",),
)


def prepare(replicas: tuple[str, ...]) -> None:
    """Export every series at its starting value, so a dashboard shows 0, not nothing."""
    for source in FILL_SOURCES:
        CACHE_FILLS.labels(source=source)
    for name in replicas:
        GTID_WAIT_TIMEOUTS.labels(replica=name)
        REPLICA_UP.labels(replica=name).set(1)


def count_fill(source: FillSource) -> None:
    CACHE_FILLS.labels(source=source).inc()


def observe_wait(replica: str, seconds: float, reached: bool) -> None:
    GTID_WAIT_SECONDS.observe(seconds)
    if not reached:
        GTID_WAIT_TIMEOUTS.labels(replica=replica).inc()


def set_up(replica: str, up: bool) -> None:
    REPLICA_UP.labels(replica=replica).set(1 if up else 0)


def set_lag(replica: str, seconds: float) -> None:
    REPLICA_LAG.labels(replica=replica).set(seconds)
