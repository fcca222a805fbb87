"""What a Redis failover leaves in the metrics: primary changes seen, and the invalidator's
rewinds (a step refused because the stored position was not the one it followed, then a replay
from what the new primary holds). Declared at import, in every process that imports it."""

from __future__ import annotations

from prometheus_client import Counter

REDIS_FAILOVERS = Counter(
    "orders_redis_failovers",
    "Changes of the Redis primary seen (its run id or replication id changed), by process "
    "(api: a worker's listener, which then empties its near cache; invalidator: which re-takes "
    "its fence and replays from the stored position).",
    ("process",),
)
INVALIDATOR_REWINDS = Counter(
    "orders_invalidator_rewinds",
    "Invalidation steps refused because the stored binlog position was not the one they "
    "followed (a step lost in a Redis failover), each followed by a replay from the stored one.",
)


def watch_failovers(process: str) -> None:
    """Export ``process``'s count at 0 before any failover, so a dashboard or an alert over
    its increase sees a series from the start, not only after the first failover."""
    REDIS_FAILOVERS.labels(process)


def count_failover(process: str) -> None:
    REDIS_FAILOVERS.labels(process).inc()


def count_rewind() -> None:
    INVALIDATOR_REWINDS.inc()
