"""Where a served page came from: the one spelling used by the cache, the view, metrics and logs."""

from __future__ import annotations

from enum import StrEnum


class CacheOutcome(StrEnum):
    """How the cache answered one request."""

    HIT = "hit"  # a fresh entry, from the near cache or Redis
    MISS = "miss"  # loaded from MySQL
    STALE = "stale"  # an older copy, because MySQL failed or another request is refreshing it
    BYPASS = "bypass"  # Redis skipped: its circuit breaker is open
    ERROR = "error"  # Redis failed on this request


# The X-Cache response header: a Redis failure and an open breaker both mean "not from the cache".
X_CACHE: dict[CacheOutcome, str] = {
    CacheOutcome.HIT: "HIT",
    CacheOutcome.MISS: "MISS",
    CacheOutcome.STALE: "STALE",
    CacheOutcome.BYPASS: "BYPASS",
    CacheOutcome.ERROR: "BYPASS",
}
