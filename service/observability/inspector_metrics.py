"""The consistency inspector's metrics (``orders-service inspect`` only): registered on first use,
so the API and the invalidator never export them. Every other metric is in ``metrics``."""

from __future__ import annotations

from prometheus_client import Counter

INSPECTOR_KINDS = ("page", "totals")


class _Inspector:
    """The consistency inspector's counters (``orders-service inspect``), registered on first
    use so that the API and the invalidator do not export them at 0."""

    counters: tuple[Counter, Counter, Counter, Counter] | None = None

    @classmethod
    def get(cls) -> tuple[Counter, Counter, Counter, Counter]:
        if cls.counters is None:
            cls.counters = (
                Counter(
                    "orders_inspector_checks",
                    "Cached entries the inspector compared with MySQL (only entries the API "
                    "would serve as hits), by kind (page, totals).",
                    ("kind",),
                ),
                Counter(
                    "orders_inspector_mismatches",
                    "First sightings of a cached entry differing from MySQL (a write in flight, "
                    "or an inconsistency: rechecked after ORDERS_CACHE_MAX_LAG), by kind.",
                    ("kind",),
                ),
                Counter(
                    "orders_inspector_inconsistencies",
                    "Confirmed inconsistencies: an entry still servable as a hit and still "
                    "different from MySQL ORDERS_CACHE_MAX_LAG after it was first seen, by kind.",
                    ("kind",),
                ),
                Counter(
                    "orders_inspector_repairs",
                    "Confirmed inconsistencies the inspector repaired (invalidated: the entry "
                    "deleted in Redis, dropped by every near cache), by kind.",
                    ("kind",),
                ),
            )
            for counter in cls.counters:
                for kind in INSPECTOR_KINDS:
                    counter.labels(kind)
        return cls.counters


def prepare_inspector() -> None:
    """Publish the inspector's counters at 0 before its first check."""
    _Inspector.get()


def count_inspection(
    kind: str, *, mismatch: bool = False, confirmed: bool = False, repaired: bool = False
) -> None:
    """Count one inspector comparison (or, with a flag, a mismatch, a confirmed one, a repair)."""
    checks, mismatches, inconsistencies, repairs = _Inspector.get()
    if repaired:
        repairs.labels(kind).inc()
    elif confirmed:
        inconsistencies.labels(kind).inc()
    elif mismatch:
        mismatches.labels(kind).inc()
    else:
        checks.labels(kind).inc()
